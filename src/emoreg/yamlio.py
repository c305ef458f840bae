"""Reading the YAML files a user writes (configs, tasks, import configs, rules, structures).

One reader, one policy: a file that cannot be read, is not UTF-8, is not YAML, or repeats a key
in one mapping is an ``EmoregError`` that names the file (and the line, where YAML knows it) and
says what to do. A repeated key is refused rather than silently keeping the last value: in a
config, the first ``lr:`` a reader sees would otherwise not be the one that runs. A number in
exponent form without a point (``lr: 3e-4``) is a number, as YAML 1.2 and every user read it, not the
text that YAML 1.1's PyYAML makes of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import EmoregError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # SafeLoader reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1}); keep one",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes the text our reader would take for a number (``name: '3e-4'``)."""


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
# YAML 1.1 wants a point and a signed exponent in a float (1.0e-3); 1.2 does not, and 3e-4 or 1.5e3
# written as a number must not reach the settings as text. The writer knows the same rule, so the text
# "3e-4" goes out quoted and comes back as text (add_implicit_resolver copies the class's table: the
# SafeLoader and SafeDumper of other code are untouched)
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
for _kind in (_UniqueKeyLoader, _Dumper):
    _kind.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def dump_yaml(data: Any) -> str:
    """``data`` as YAML that ``parse_yaml`` reads back the same (keys in their order)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML text (``where`` names it in errors), refusing repeated keys."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise EmoregError(f"{where}: nested too deeply to read") from None
    except yaml.YAMLError as exc:
        raise EmoregError(f"{where}: not valid YAML: {exc}") from None


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed content of a user's YAML ``path``; ``what`` (config, task, ...) names it in errors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise EmoregError(f"{what} {path} is a folder; give the path of a YAML file") from None
    except OSError as exc:
        raise EmoregError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte or a lone surrogate in the name: no file can have it
        raise EmoregError(f"cannot read {what} {str(path)!r}: not a file name this system can open") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise EmoregError(f"{path}:{line}: not UTF-8 text (byte {exc.start + 1} of the file); save the {what} as "
                          "UTF-8") from None
    return parse_yaml(text, str(path))
