"""The docs run: every code block of README.md and docs/*.md is run here, or says why it is not.

- ```python blocks run, placeholders (`outputs/lenet5/<date>_<time>`, `path/to/digits_zoo`, ...)
  replaced by real run folders and paths. A line `EXPRESSION  # VALUE` whose VALUE is a Python
  literal states a result: EXPRESSION must equal it (a list ending in `...`: must start with it).
- ```bash blocks: every `python train.py ...` and `python eval.py ...` command composes (its
  overrides exist and fit); a command whose comment states a percentage runs on the real MNIST
  files (the real-data tier) and must print it.
- transcripts (blocks of `$ command` lines, each followed by what it prints) run, and every line
  they show must be printed (`...` stands for any text).
- a transcript just below `<!-- real data -->` runs in the real-data tier; a block just below
  `<!-- not run: REASON -->` is not run, for that reason.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob

from tests.conftest import CONFIGS, ROOT, compose_tiny_run
from tests.idx import write_dataset

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"(?:<!-- (?P<marker>[^>]*?) -->\n)?^```(?P<language>\w*)\n(?P<code>.*?)^```", re.DOTALL | re.MULTILINE
)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str  # python, bash, or "" (a transcript or other text)
    code: str
    marker: str | None  # "real data", "not run: REASON", or None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        if self.marker and self.marker.startswith("not run:"):
            return "not run"
        if self.language == "" and self.code.startswith("$ "):
            return "transcript"
        return self.language

    @property
    def real_data(self) -> bool:
        return self.marker == "real data"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start("language")) + 1
            found.append(Block(page, line, match["language"], match["code"], match["marker"]))
    return found


def of_kind(kind: str, real_data: bool) -> list[Block]:
    return [block for block in blocks() if block.kind == kind and block.real_data == real_data]


def test_every_block_runs_or_says_why_not():
    unexplained = [
        str(block)
        for block in blocks()
        if block.kind not in ("python", "bash", "transcript", "not run")
        or (block.real_data and block.kind != "transcript")
    ]
    assert unexplained == [], "add <!-- not run: REASON --> above these blocks, or make them runnable"
    assert any(block.kind == "not run" for block in blocks())  # (the marker is recognised)


# Placeholders in the docs, and what stands in for them here: the runs are made on the tests' tiny data.
RUN_PLACEHOLDER = re.compile(r"outputs/(?P<model>\w+)/(?:<date>_<time>|<run>|\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)")


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    """A working folder; small synthetic data with room for the default 5,000-image validation split;
    and a run folder (1 epoch) for each model the docs' run placeholders name, made on first use."""
    data = write_dataset(tmp_path_factory.mktemp("data"), n_train=5400, n_test=300)
    cwd = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "docs" / "examples", cwd / "docs" / "examples")  # the pictures docs/predict.md reads
    return {"cwd": cwd, "data": data, "runs": tmp_path_factory.mktemp("runs")}


def run_folder(places: dict, model: str) -> Path:
    from digits_zoo.training.run import train

    run = places["runs"] / model
    if not (run / "results.json").is_file():
        train(compose_tiny_run(places["data"], run, f"model={model}", "trainer.max_epochs=1"))
    return run


def substitute(text: str, places: dict) -> str:
    text = RUN_PLACEHOLDER.sub(lambda m: str(run_folder(places, m["model"])), text)
    return text.replace("path/to/digits_zoo", str(ROOT)).replace(
        "my.ckpt", str(run_folder(places, "lenet5") / "checkpoints" / "last.ckpt")
    )


def checked(code: str) -> str:
    """The code, each `EXPRESSION  # LITERAL` line turned into a check of the result it states."""
    lines = []
    for line in code.splitlines():
        expression, _, comment = line.partition("  #")
        try:
            ast.parse(expression.strip(), mode="eval")
            expected = ast.literal_eval(comment.strip())
        except (SyntaxError, ValueError):
            lines.append(line)
            continue
        lines.append(f"_states({expression.strip()}, {expected!r}, {line.strip()!r})")
    return "\n".join(lines)


def _states(actual, expected, line: str) -> None:
    if isinstance(expected, list) and expected and expected[-1] is Ellipsis:
        actual, expected = list(actual)[: len(expected) - 1], expected[:-1]
    assert actual == expected, f"{line}: the docs say {expected!r}, the code gives {actual!r}"


def run_python(block: Block, places: dict, monkeypatch) -> dict:
    monkeypatch.chdir(places["cwd"])
    namespace = {"_states": _states, "__name__": "__doc_snippet__"}
    exec(compile(checked(substitute(block.code, places)), str(block), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("block", of_kind("python", real_data=False), ids=str)
def test_python_block_runs_and_states_true_results(block, places, monkeypatch):
    monkeypatch.setenv("DIGITS_ZOO_DATA_DIR", str(places["data"]))
    namespace = run_python(block, places, monkeypatch)
    for name, source, inference in re.findall(
        r"^(\w+) = (create_model\(\"\w+\", pretrained=True\))(\.eval\(\))?", block.code, re.MULTILINE
    ):
        # a shipped model that the snippet uses as it is: its weights and batch-norm statistics are still
        # the shipped ones afterwards (in training mode batch norm learns from what it reads)
        model, shipped = namespace[name], eval(source, namespace).state_dict()
        changed = [
            key for key, value in model.state_dict().items() if key in shipped and not torch.equal(value, shipped[key])
        ]
        assert changed == [], f"{block}: using {name} as shown changed its {', '.join(changed)}"
        assert model.training != bool(inference), f"{block}: {name} is not in the mode the snippet says"


def commands(code: str) -> list[tuple[str, str]]:
    """(command, the comment after it) for each command of a bash block or transcript."""
    code = code.replace("\\\n", " ")
    found = []
    for line in code.splitlines():
        line = line.removeprefix("$ ")
        command, _, comment = line.partition(" #")
        for part in command.split("&&"):
            if part.strip() and not part.strip().startswith(("pip ", "export ", "tensorboard", "jupyter")):
                found.append((part.strip(), comment.strip()))
    return found


TRAIN_OR_EVAL = re.compile(r"(python (train|eval)\.py|digits-zoo (train|eval))\b")


def composes(command: str, places: dict) -> None:
    """A train or eval command's overrides compose (a sweep: with its first values)."""
    words = shlex.split(substitute(command, places))
    entry = words[1].removesuffix(".py")
    overrides = [word for word in words[2:] if word != "-m"]
    first = []
    for override in OverridesParser.create().parse_overrides(overrides):
        value = override.value()
        if isinstance(value, Glob):  # e.g. model=glob(*): the first config it names
            value = value.filter(sorted(path.stem for path in (CONFIGS / override.key_or_group).glob("*.yaml")))[0]
        elif override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
        elif not isinstance(value, str):
            value = override.get_value_element_as_str()
        first.append(f"{override.get_key_element()}={value}")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        compose(entry, overrides=first)


@pytest.mark.parametrize("block", [b for b in blocks() if b.kind == "bash"], ids=str)
def test_every_train_and_eval_command_composes(block, places):
    for command, _ in commands(block.code):
        if TRAIN_OR_EVAL.match(command) and "--" not in command:  # (Hydra's own flags: --cfg, --config-dir)
            composes(command, places)


def run_command(command: str, places: dict, data_dir: Path) -> str:
    """What the command prints (stdout and stderr), run as a user would in the working folder."""
    words = shlex.split(substitute(command, places))
    if words[0] == "digits-zoo":  # the console command of this checkout
        words = ["python", "-m", "digits_zoo", *words[1:]]
    assert words[0] == "python", command
    if words[1].endswith(".py"):
        words[1] = str(ROOT / words[1])
    env = {**os.environ, "DIGITS_ZOO_DATA_DIR": str(data_dir)}
    result = subprocess.run(
        [sys.executable, *words[1:]], cwd=places["cwd"], env=env, capture_output=True, text=True, timeout=600
    )
    return result.stdout + result.stderr


def shows(expected: str, output: str) -> bool:
    pattern = ".*".join(map(re.escape, expected.split("...")))
    return any(re.fullmatch(pattern, line.rstrip()) for line in output.splitlines())


def transcript(block: Block, places: dict) -> list[tuple[str, list[str]]]:
    """(command, the lines it shows) for each `$ command` of the block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in substitute(block.code, places).splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            pairs[-1][1].append(line)
    return pairs


def check_transcript(block: Block, places: dict, data_dir: Path) -> None:
    for command, lines in transcript(block, places):
        output = run_command(command, places, data_dir)
        missing = [line for line in lines if not shows(line, output)]
        assert missing == [], f"{block}: {command} no longer prints these lines; it printed:\n{output}"


@pytest.mark.slow  # runs each command of the docs' transcripts as a process
@pytest.mark.parametrize("block", of_kind("transcript", real_data=False), ids=str)
def test_transcript_is_what_the_commands_print(block, places):
    check_transcript(block, places, places["data"])


# the real-data tier: blocks marked <!-- real data -->, and commands that state a percentage


@pytest.mark.real_data
@pytest.mark.parametrize("block", of_kind("transcript", real_data=True), ids=str)
def test_transcript_on_the_real_data_is_what_the_commands_print(block, places, real_data_dir):
    check_transcript(block, places, real_data_dir)


STATED = [
    (block, command, comment)
    for block in blocks()
    if block.kind == "bash"
    for command, comment in commands(block.code)
    if re.search(r"\d+\.\d+%", comment)
]


@pytest.mark.real_data
@pytest.mark.parametrize("block, command, comment", STATED, ids=[f"{b}: {c}" for b, c, _ in STATED])
def test_a_percentage_in_a_commands_comment_is_what_it_prints(block, command, comment, places, real_data_dir):
    output = run_command(command, places, real_data_dir)
    for number in re.findall(r"\d+\.\d+%", comment):
        assert number in output, f"{block}: {command} states {number}; it printed:\n{output}"


# the numbers the docs quote from docs/results/measured.json (docs/tables.py generates them): the quick
# commands are run again here and must give the same test accuracy (training on the CPU is deterministic)
spec = importlib.util.spec_from_file_location("measure", ROOT / "docs" / "measure.py")
measure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(measure)


@pytest.mark.real_data
@pytest.mark.parametrize("name", measure.QUICK)
def test_a_measured_result_the_docs_quote_is_what_its_command_gives(name, real_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_ZOO_DATA_DIR", str(real_data_dir))
    recorded = measure.measured()[name]
    assert recorded["command"] == measure.COMMANDS[name]
    assert f"{100 * measure.run(name, tmp_path / 'run')['test/acc']:.2f}%" == f"{100 * recorded['test/acc']:.2f}%"


def test_every_command_has_its_result_recorded_under_its_own_words():
    # (a recipe renamed or reworded in docs/measure.py without its record would quote another command's numbers)
    assert {name: record["command"] for name, record in measure.measured().items()} == measure.COMMANDS


def test_a_long_run_made_by_hand_is_recorded_only_from_its_own_command(tmp_path, monkeypatch):
    monkeypatch.setattr(measure, "MEASURED", tmp_path / "measured.json")
    name = "robust_vgg_noise"
    run = tmp_path / "run"
    run.mkdir()
    ran = {**measure.configuration(name), "threads": 1}  # (other threads: the same recipe)
    (run / "config.yaml").write_text(yaml.safe_dump(ran))
    (run / "results.json").write_text('{"test/acc": 0.99, "train_seconds": 5.0, "mnist_c/mean": 0.9, "seed": 1}')
    assert measure.main([name, "--run", str(run)]) == 0
    assert measure.measured() == {
        name: {"command": measure.COMMANDS[name], "test/acc": 0.99, "train_seconds": 5.0, "mnist_c/mean": 0.9}
    }
    (run / "config.yaml").write_text(yaml.safe_dump({**ran, "seed": 2}))
    with pytest.raises(SystemExit, match="was not made by robust_vgg_noise's command: seed: 2, not 1"):
        measure.main([name, "--run", str(run)])
    with pytest.raises(SystemExit, match="is not a finished run folder"):
        measure.main([name, "--run", str(tmp_path / "nowhere")])
