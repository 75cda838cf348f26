"""The merge of flags, environment, config file and defaults (threadloom.sources), in-process."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from threadloom.cli import build_parser, resolved_from
from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.reload import config_argv
from threadloom.sources import ConfigFile, check, describe, find_file, read_file, resolve


def a_file(label: str = "site.toml", **values: Any) -> ConfigFile:
    return ConfigFile(Path(label), label, values, "given by --config")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# precedence, in each direction: flag > environment > (socket activation) > file > default


def test_defaults_when_nothing_is_given() -> None:
    resolved = resolve({}, {}, None)
    assert resolved.config == Config()
    assert set(resolved.sources.values()) == {"default"}


def test_the_file_beats_the_defaults() -> None:
    resolved = resolve({}, {}, a_file(threads=4, bind=(":9000",)))
    assert resolved.config.threads == 4 and resolved.config.bind == (":9000",)
    assert resolved.sources["threads"] == "site.toml"
    assert resolved.sources["model"] == "default"


def test_the_environment_beats_the_file() -> None:
    resolved = resolve({}, {"THREADLOOM_THREADS": "6"}, a_file(threads=4, model="threads"))
    assert resolved.config.threads == 6
    assert resolved.sources["threads"] == "env THREADLOOM_THREADS"
    assert (resolved.config.model, resolved.sources["model"]) == ("threads", "site.toml")


def test_a_flag_beats_the_environment_and_the_file() -> None:
    resolved = resolve({"threads": 8}, {"THREADLOOM_THREADS": "6"}, a_file(threads=4))
    assert (resolved.config.threads, resolved.sources["threads"]) == (8, "flag")


def test_a_list_from_a_higher_layer_replaces_the_lower_one() -> None:
    resolved = resolve({}, {"THREADLOOM_BIND": ":9001"}, a_file(bind=(":9000", ":9002")))
    assert resolved.config.bind == (":9001",)


def test_socket_activation_beats_the_file_but_not_the_environment() -> None:
    def activated() -> tuple[str, ...]:
        return ("fd://3",)

    file = a_file(bind=(":9000",))
    assert resolve({}, {}, file, activated).config.bind == ("fd://3",)
    assert resolve({}, {}, file, activated).sources["bind"].startswith("socket activation")
    assert resolve({}, {"THREADLOOM_BIND": ":9001"}, file, activated).config.bind == (":9001",)
    assert resolve({"bind": (":9002",)}, {}, file, activated).config.bind == (":9002",)


def test_a_validation_error_names_where_the_value_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^--threads must be at least 1 \(threads from site"):
        resolve({}, {}, a_file(threads=0))
    with pytest.raises(ConfigError, match=r"\(threads from env THREADLOOM_THREADS\)$"):
        resolve({}, {"THREADLOOM_THREADS": "0"}, None)
    with pytest.raises(ConfigError, match=r"^--threads must be at least 1$"):
        resolve({"threads": 0}, {}, a_file(threads=4))


# keys and types


def test_every_flag_is_a_key_with_its_type() -> None:
    table: dict[str, Any] = {"bind": ["a:1", "b:2"], "model": "asyncio", "threads": 3}
    table |= {"graceful-timeout": 5, "access-log": False, "timeout-io": 2.5}
    values = check(table, "f.toml")
    assert values == {
        "bind": ("a:1", "b:2"),
        "model": "asyncio",
        "threads": 3,
        "graceful_timeout": 5.0,
        "access_log": False,
        "timeout_io": 2.5,
    }
    assert isinstance(values["graceful_timeout"], float)  # an integer is a fine float
    assert check({"bind": "a:1"}, "f.toml") == {"bind": ("a:1",)}  # one address, no list


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"max_connections": 5},
            "unknown setting 'max_connections' (keys are spelled as the "
            "flags, without --: 'max-connections')",
        ),
        ({"--threads": 5}, "unknown setting '--threads' (keys are spelled as the flags"),
        ({"no-access-log": True}, "unknown setting 'no-access-log' (write access-log = false)"),
        ({"threds": 5}, "unknown setting 'threds' (did you mean 'threads'?)"),
        ({"colour": "blue"}, "unknown setting 'colour' (see threadloom serve --help)"),
        ({"threads": "4"}, 'threads must be an integer, not a string ("4")'),
        ({"threads": True}, "threads must be an integer, not a boolean (true)"),
        ({"threads": 4.0}, "threads must be an integer, not a float (4.0)"),
        ({"reuse-port": 1}, "reuse-port must be a boolean, not an integer (1)"),
        ({"reuse-port": "yes"}, "reuse-port must be a boolean, not a string"),
        ({"graceful-timeout": "30s"}, "graceful-timeout must be a float, not a string"),
        ({"model": ["pool"]}, "model must be a string, not an array"),
        ({"bind": 8000}, "bind must be a string or an array of strings, not an integer (8000)"),
        ({"bind": [":1", 2]}, "bind must be a string or an array of strings, not an array"),
        ({"model": "fibers"}, "model = 'fibers' is not one of single, threads, pool, asyncio"),
    ],
)
def test_a_wrong_key_or_type_names_the_key_and_the_file(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        check(table, "conf/site.toml")
    assert str(raised.value).startswith("conf/site.toml: " + message)


# which file


def test_the_file_is_flag_then_environment_then_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.threadloom]\nthreads = 1\n")
    flag = write(tmp_path / "flag.toml", "threads = 2\n")
    env = write(tmp_path / "env.toml", "threads = 3\n")
    environ = {"THREADLOOM_CONFIG": str(env)}

    def chosen(given: str | None, environ: dict[str, str]) -> tuple[Any, str] | None:
        file = find_file(given, environ, tmp_path)
        return None if file is None else (file.values["threads"], file.chosen_by)

    assert chosen(str(flag), environ) == (2, "given by --config")
    assert chosen(None, environ) == (3, "given by THREADLOOM_CONFIG")
    assert chosen(None, {}) == (1, "found in the current folder")
    assert chosen("", environ) is None  # --no-config
    assert chosen(None, {"THREADLOOM_CONFIG": ""}) is None


def test_a_pyproject_without_our_table_is_no_config(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\n[tool.ruff]\nline-length = 99\n')
    assert find_file(None, {}, tmp_path) is None
    assert find_file(None, {}, tmp_path / "elsewhere") is None  # no pyproject.toml at all
    with pytest.raises(ConfigError, match=r"pyproject.toml: no \[tool.threadloom\] table$"):
        find_file(str(tmp_path / "pyproject.toml"), {}, tmp_path)  # named: it must have one


def test_a_named_pyproject_is_read_from_its_table(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", "[tool.threadloom]\nworkers = 2\n")
    file = read_file(path, "../pyproject.toml", "--config", table_required=True)
    assert file is not None
    assert file.values == {"workers": 2} and file.label == "../pyproject.toml [tool.threadloom]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads = \n", r"^site.toml: not valid TOML: Invalid value \(at line 1, column 11\)$"),
        ("threads = 1\nthreads = 2\n", "^site.toml: not valid TOML: Cannot overwrite a value"),
        ("[tool]\nthreads = 1\n", r"^site.toml: unknown setting 'tool'"),
        (b"threads = 1 # \xff\n", "^site.toml: not valid TOML"),
    ],
)
def test_invalid_toml_is_one_line(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "site.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message) as raised:
        read_file(path, "site.toml", "--config", table_required=True)
    assert "\n" not in str(raised.value)


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope.toml: cannot read the config file: No such"):
        find_file("nope.toml", {}, tmp_path)
    with pytest.raises(ConfigError, match=r"cannot read the config file: Is a directory$"):
        find_file(str(tmp_path), {}, tmp_path)


# what `threadloom config` prints, and what the reloader's child is given


def test_describe_is_a_table_of_setting_value_and_source() -> None:
    resolved = resolve({"threads": 7}, {"THREADLOOM_MODEL": "threads"}, a_file(bind=(":9",)))
    lines = describe(resolved).splitlines()
    assert lines[0].startswith("config file: site.toml (given by --config; /")
    assert lines[1] == ""
    rows = [line.split() for line in lines[2:]]
    assert rows[0] == ["setting", "value", "from"]
    assert rows[1:4] == [
        ["bind", '[":9"]', "site.toml"],
        ["model", '"threads"', "env", "THREADLOOM_MODEL"],
        ["threads", "7", "flag"],
    ]
    assert ["access-log", "true", "default"] in rows
    assert ["metrics-bind", '""', "default"] in rows
    assert len(rows) == 1 + len(dataclasses.fields(Config))
    starts = {line.index(line.split()[1]) for line in lines[2:]}
    assert len(starts) == 1, "the value column is aligned"
    assert describe(resolve({}, {}, None)).startswith("config file: none\n")


def test_the_reloaders_child_reads_no_file_and_gets_every_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Config(threads=3, bind=(":1", ":2"), access_log=False, graceful_timeout=2.5)
    argv = config_argv(config)
    assert argv[0] == "--no-config"
    # the child's command line, where a file and the environment say otherwise
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pyproject.toml", '[tool.threadloom]\nthreads = 9\nmodel = "single"\n')
    monkeypatch.setenv("THREADLOOM_CONFIG", "pyproject.toml")
    monkeypatch.setenv("THREADLOOM_WORKERS", "4")
    args = build_parser().parse_args(["serve", "app:app", *argv])
    resolved = resolved_from(args)
    assert resolved.config == config and resolved.file is None


@pytest.mark.parametrize("doc", ["README.md", "docs/deploy.md"])
def test_the_example_files_in_the_docs_are_valid(doc: str) -> None:
    text = (Path(__file__).parents[2] / doc).read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert blocks, f"{doc} shows no config file"
    for block in blocks:
        document = tomllib.loads(block)
        table = document.get("tool", {}).get("threadloom", document)
        resolve({}, {}, a_file(doc, **check(table, doc)))
