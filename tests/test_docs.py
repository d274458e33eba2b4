"""The documentation runs and points where it says: README.md and docs/*.md, checked.

- Every fenced ``python`` block runs: a file's blocks in order, in one namespace, in an
  empty working folder (the autouse fixture of conftest.py), offline. Files whose blocks
  train Keras models or run experiments are marked ``e2e``.
- Every ``yaml`` block is valid YAML, and one with a config section at its top level is
  validated by the config models: a full config as it is, a fragment (a few sections)
  merged into a minimal config, so a misspelt key or a wrong type in the docs fails here
  as it would for a user.
- Every ``stacking COMMAND --flag`` in a ``bash`` block names a real subcommand and flag
  of :func:`stacking.cli.build_parser`; every ``make TARGET`` a Makefile target; every
  ``python path/to/script.py`` a file in the repository.
- Every relative link resolves to a file in the repository (and to a heading, for an
  anchor into a Markdown file); no link leaves the repository.
- ``docs/configuration.md`` is exactly what ``python -m stacking._docgen`` writes.
- The architecture document's table "to add an implementation, touch these files" names
  the module of every registered loader, executor, cache store, tracker and meta-learner.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages written on other branches and linked from docs/index.md before they are merged.
# The lead deletes each name once its file is on this branch; then its links and anchors
# are checked like every other page's.
OTHER_BRANCH_DOCS: set[str] = set()
# A page whose python blocks train models or run experiments is an e2e test.
_HEAVY = re.compile(r"\b(keras|tensorflow|Experiment|load_predictor|train_fold_models)\b")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first content line
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (``` or ~~~ fences, any length >= 3)."""
    blocks, fence, lang, start, body = [], None, "", 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            match = re.match(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)", line)
            if match:
                fence, lang, start, body = match.group(1), match.group(2).lower(), n + 1, []
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append(Block(path, start, lang, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    assert fence is None, (
        f"{path.relative_to(ROOT)}: a code block opened on line {start - 1} never closes"
    )
    return blocks


def _blocks(lang: str) -> list[Block]:
    return [b for path in DOCS for b in fenced_blocks(path) if b.lang == lang]


def _ids(items) -> list[str]:
    return [str(i) if isinstance(i, Block) else i.relative_to(ROOT).as_posix() for i in items]


# --- python blocks run ------------------------------------------------------------------

_PYTHON_FILES = [p for p in DOCS if any(b.lang == "python" for b in fenced_blocks(p))]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=[pytest.mark.e2e] if _HEAVY.search(p.read_text()) else [])
        for p in _PYTHON_FILES
    ],
    ids=_ids(_PYTHON_FILES),
)
def test_docs_python_blocks_run_in_order(path, tmp_path):
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in fenced_blocks(path):
        if block.lang == "python":
            # Line numbers in a traceback are the Markdown file's own.
            code = compile("\n" * (block.line - 1) + block.text, str(path), "exec")
            exec(code, namespace)


def test_docs_the_training_guide_is_among_the_pages_that_run():
    assert ROOT / "docs/training.md" in _PYTHON_FILES
    assert ROOT / "docs/meta-learners.md" in _PYTHON_FILES


# --- yaml blocks validate -----------------------------------------------------------------

_MINIMAL = {
    "name": "docs",
    "data": {"train": "train.csv", "target": "y", "views": {}},
    "base_models": {},
}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def as_config(raw: dict) -> dict:
    """A YAML block as a config to validate: a fragment goes into a minimal config, with a
    placeholder view for each view name its base models refer to."""
    if "data" in raw and "base_models" in raw:
        return raw
    merged = _merge(copy.deepcopy(_MINIMAL), copy.deepcopy(raw))
    if not merged["base_models"]:
        merged["base_models"] = {"m": {"path": "m", "input": {"columns": ["x"]}}}
    views = merged["data"].setdefault("views", {})
    for model in merged["base_models"].values():
        spec = model.get("input") if isinstance(model, dict) else None
        refs = (
            spec.values() if isinstance(spec, dict) else spec if isinstance(spec, list) else [spec]
        )
        for ref in refs:
            if isinstance(ref, str):
                views.setdefault(ref, {"columns": [ref]})
    return merged


@pytest.mark.parametrize("block", _blocks("yaml"), ids=_ids(_blocks("yaml")))
def test_docs_yaml_blocks_are_valid_configs(block, tmp_path):
    from stacking.config import Config, parse_config

    raw = yaml.safe_load(block.text)  # every yaml block is valid YAML
    if not (isinstance(raw, dict) and set(raw) & set(Config.model_fields)):
        return  # not an experiment config (an MLmodel file, a CI file): YAML is all we check
    parse_config(as_config(raw), root=tmp_path, source=str(block))


def test_docs_yaml_check_catches_a_misspelt_key(tmp_path):
    from stacking.config import parse_config
    from stacking.errors import ConfigError

    with pytest.raises(ConfigError, match=r"meta\.candidatez"):
        parse_config(as_config({"meta": {"candidatez": ["mean"]}}), root=tmp_path)
    with pytest.raises(ConfigError, match="executor"):
        parse_config(as_config({"executor": {"kind": "nosuch"}}), root=tmp_path)


# --- bash blocks name real commands -----------------------------------------------------


def _cli_options() -> dict[str, set[str]]:
    """Subcommand -> its option strings (and the top-level ones under "")."""
    import argparse

    from stacking.cli import build_parser

    parser = build_parser()
    options = {"": set(parser._option_string_actions)}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                options[name] = set(sub._option_string_actions) | options[""]
    return options


def _commands(text: str) -> list[list[str]]:
    """The simple commands of a bash block: comments, prompts and continuations removed,
    split at pipes and ``&&``; ``[--flag]`` optional parts kept as their flag."""
    text = text.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ")
        for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", line):
            try:
                words = shlex.split(part.replace("[", " ").replace("]", " "))
            except ValueError:
                words = part.split()
            if words:
                found.append(words)
    return found


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w-]+):", text, flags=re.M))


def bash_problems(text: str) -> list[str]:
    """What is wrong with a bash block's commands (empty when every one is real)."""
    options, targets, problems = _cli_options(), _makefile_targets(), []
    for words in _commands(text):
        if words[0] == "stacking":
            rest = [w for w in words[1:] if w not in options[""]]
            command = rest[0] if rest else ""
            if command not in options or not command:
                problems.append(f"`stacking {command}` is not a subcommand")
                continue
            for word in words[1:]:
                flag = word.split("=", 1)[0]
                if flag.startswith("--") and flag not in options[command]:
                    problems.append(f"`stacking {command}` has no option {flag}")
        elif words[0] == "make":
            for target in (w for w in words[1:] if "=" not in w and not w.startswith("-")):
                if target not in targets:
                    problems.append(f"`make {target}`: no such Makefile target")
        elif words[0] in ("python", "python3") and len(words) > 1:
            if words[1] == "-m":
                module = words[2].replace(".", "/")
                if words[2].startswith("stacking") and not (
                    (ROOT / f"{module}.py").is_file() or (ROOT / module / "__main__.py").is_file()
                ):
                    problems.append(f"`python -m {words[2]}`: no such module")
            elif words[1].endswith(".py") and not (ROOT / words[1]).is_file():
                problems.append(f"`python {words[1]}`: no such file in the repository")
    return problems


@pytest.mark.parametrize("block", _blocks("bash"), ids=_ids(_blocks("bash")))
def test_docs_bash_blocks_name_real_commands_and_flags(block):
    assert bash_problems(block.text) == [], str(block)


def test_docs_bash_check_catches_wrong_commands():
    assert bash_problems("stacking run c.yaml --set a=1 --output o/\nmake demo") == []
    assert bash_problems("stacking run c.yaml --nosuch") == [
        "`stacking run` has no option --nosuch"
    ]
    assert bash_problems("stacking frobnicate x") == ["`stacking frobnicate` is not a subcommand"]
    assert bash_problems("make nosuch") == ["`make nosuch`: no such Makefile target"]
    assert bash_problems("python experiments/nosuch.py") == [
        "`python experiments/nosuch.py`: no such file in the repository"
    ]
    assert bash_problems("$ stacking --debug predict r x --output p.csv [--proba]  # c") == []
    assert bash_problems("stacking cache info | stacking cache verify --dir d") == []


# --- links stay in the repository and resolve ----------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings (outside code blocks)."""
    found: set[str] = set()
    inside = False
    for line in text.splitlines():
        if re.match(r"^ {0,3}(`{3,}|~{3,})", line):
            inside = not inside
        elif not inside and (match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            text = match.group(1).lower()
            slug = "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")
            found.add(slug)
    return found


def _prose(text: str) -> str:
    """The text without its code (links there are code, not links)."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"^ {0,3}(`{3,}|~{3,})", line):
            inside = not inside
        elif not inside:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def link_problems(path: Path, text: str | None = None) -> list[str]:
    """What is wrong with the links of ``path`` (its ``text`` when given)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    problems = []
    for target in _LINK.findall(_prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):
            problems.append(f"{target}: points outside the repository")
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if file_part and ROOT not in resolved.parents:
            problems.append(f"{target}: points outside the repository")
            continue
        if file_part and not resolved.exists():
            if not (resolved.parent == ROOT / "docs" and resolved.name in OTHER_BRANCH_DOCS):
                problems.append(f"{target}: no such file")
            continue  # a page of another branch is checked once it is merged
        if anchor and resolved.suffix == ".md":
            headings = anchors(text if resolved == path else resolved.read_text(encoding="utf-8"))
            if anchor not in headings:
                problems.append(f"{target}: no heading with anchor #{anchor}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_docs_links_resolve_inside_the_repository(path):
    assert link_problems(path) == []


def test_docs_link_check_catches_dead_and_outside_links():
    text = (
        "# Page\n[a](../../elsewhere/DESIGN.md) [b](https://example.org) [c](nosuch.md)\n"
        "[d](#nosuch) [e](user-guide.md#nosuch) `[f](nosuch.md)`\n"
        "[g](user-guide.md#running) [h](serving.md#threat-model) [i](#page) [j](../Makefile)\n"
    )
    assert link_problems(ROOT / "docs" / "page.md", text) == [
        "../../elsewhere/DESIGN.md: points outside the repository",
        "https://example.org: points outside the repository",
        "nosuch.md: no such file",
        "#nosuch: no heading with anchor #nosuch",
        "user-guide.md#nosuch: no heading with anchor #nosuch",
    ]


def test_docs_no_development_history_in_user_docs():
    history = re.compile(r"\bissue \d+|\bthis round\b|\bmissed\b|\bissue #?\d+|\.\./shared")
    for path in DOCS:
        if path.name.startswith("notes-"):  # hand-over notes, placed by the maintainers
            continue
        found = history.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_docs_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_docs_index_lists_every_page():
    index = (ROOT / "docs/index.md").read_text()
    for page in [p.name for p in DOCS[1:] if not p.name.startswith("notes-")] + sorted(
        OTHER_BRANCH_DOCS
    ):
        if page != "index.md":
            assert f"({page})" in index, f"docs/index.md does not link {page}"


# --- the configuration reference is generated ------------------------------------------------


def test_docs_configuration_reference_is_what_the_generator_writes():
    from stacking._docgen import OUTPUT, render

    assert OUTPUT == ROOT / "docs/configuration.md"
    assert OUTPUT.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run python -m stacking._docgen"
    )


def test_docs_configuration_reference_refuses_an_undocumented_section(monkeypatch):
    from stacking import _docgen

    sections = _docgen._SECTIONS
    monkeypatch.setattr(_docgen, "_SECTIONS", [s for s in sections if s[1] != "folds"])
    with pytest.raises(RuntimeError, match=r"add \['FoldsConfig'\] to _SECTIONS"):
        _docgen.render()
    monkeypatch.setattr(_docgen, "_SECTIONS", sections)
    families = [f for f in _docgen._FAMILIES if f.family != "cache"]  # a plug-in section
    monkeypatch.setattr(_docgen, "_FAMILIES", families)
    with pytest.raises(RuntimeError, match=r"\['LocalCacheConfig', 'MemoryCacheConfig'\]"):
        _docgen.render()


def test_docs_configuration_reference_names_every_config_key():
    from stacking._docgen import render
    from stacking.config import Config

    text = render()
    for key in Config.model_fields:
        assert f"| `{key}` |" in text
    for key in ("data.views.NAME.columns", "base_models.NAME.head", "executor.num_gpus"):
        assert f"| `{key}` |" in text


# --- the architecture table names every registered implementation ---------------------------


def _module_file(module: str) -> str:
    return module.replace(".", "/") + ".py"


def registered_modules() -> dict[str, dict[str, str]]:
    """Family -> registered kind -> the file of the module that implements it (the kinds
    tf-stacking ships: a kind a test registers for the session lives in tests/)."""
    from stacking.base import LOADERS
    from stacking.config import CacheConfig, ExecutorConfig, KindConfig, TrackingConfig
    from stacking.meta import _base

    def kinds(family: type[KindConfig]) -> dict[str, str]:
        found = {}
        for kind, config in family.registered().items():
            if not config.__module__.startswith("stacking."):
                continue
            # The kind's config class lives with its implementation.
            assert config.implementation.__module__ == config.__module__, kind
            found[kind] = _module_file(config.__module__)
        return found

    def meta_module(learner) -> str:
        cls = learner.classifier or learner.regressor
        module = cls.__module__ if isinstance(cls, type) else cls.rpartition(".")[0]
        # Short names for classes outside the package are registered in meta/_base.py.
        return _module_file(module if module.startswith("stacking.") else _base.__name__)

    return {
        "loader": {type(x).__name__: _module_file(type(x).__module__) for x in LOADERS},
        "executor": kinds(ExecutorConfig),
        "cache store": kinds(CacheConfig),
        "tracker": kinds(TrackingConfig),
        "meta-learner": {name: meta_module(m) for name, m in _base._REGISTRY.items()},
    }


def architecture_table() -> dict[str, str]:
    """Family -> the table row's text, from docs/architecture.md's "Adding an
    implementation" table (first column: the family)."""
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    section = text.split("## Adding an implementation", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("-: "):
            rows[cells[0].strip("*").lower()] = line
    return rows


def test_docs_architecture_table_names_every_registered_module():
    table = architecture_table()
    for family, kinds in registered_modules().items():
        assert family in table, f"docs/architecture.md: no row for {family}"
        assert kinds, f"no {family} is registered"
        for kind, module in kinds.items():
            assert (ROOT / module).is_file(), f"{family} {kind!r}: {module} does not exist"
            assert module in table[family], (
                f"docs/architecture.md: the {family} row does not name {module} ({kind!r})"
            )
    for row in table.values():  # and every file the table names exists
        for named in re.findall(r"`([\w/.]+\.py)`", row):
            assert (ROOT / named).is_file(), f"docs/architecture.md names {named}"


# --- the bad-input table follows its tests ---------------------------------------------------


def test_docs_bad_input_table_has_every_tested_row_with_a_matching_message():
    """Each row of ``tests/test_bad_inputs.py`` is in docs/bad-input.md, and the message
    shown there still matches the pattern the test checks the CLI's line against (print
    the table again with ``python tests/test_bad_inputs.py`` when a message changes)."""
    from test_bad_inputs import ROWS

    table = {}
    for line in (ROOT / "docs/bad-input.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 4 and cells[2].startswith("``"):
            table[(cells[0], cells[1])] = (cells[2].strip("` ").replace("\\|", "|"), cells[3])
    for key, row in ROWS.items():
        assert (row.area, row.what) in table, f"docs/bad-input.md has no row for {key}"
        shown, raises = table[(row.area, row.what)]
        # The table shows paths and digests as "…"; any word stands for them here.
        assert re.search(row.match, shown.replace("…", "a0")), f"docs/bad-input.md, {key}"
        api = row.error.__name__ if row.argv is None or row.api else "(CLI only)"
        assert raises == f"`{api}`", f"docs/bad-input.md, {key}: {raises}"
    assert len(table) == len(ROWS), "docs/bad-input.md has rows that no test checks"
