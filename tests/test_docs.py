"""The docs cannot drift: generated tables equal their sources, and every relative link resolves."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)|<img [^>]*src=\"([^\"]+)\"")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def tables(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "docs" / "tables.py"), *args], capture_output=True, text=True)


def prose(path: Path) -> str:
    """The page without its code blocks and inline code (where brackets are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text()))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug if slug not in seen else f"{slug}-{seen[slug]}"] = seen.get(slug, 0) + 1
    return set(seen)


def broken_links(page: Path) -> list[str]:
    broken = []
    for match in LINK.finditer(prose(page)):
        target = match[1] or match[2]
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not ours to check here
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
            broken.append(f"{page.name}: {target} (no such heading)")
    return broken


def test_generated_tables_equal_what_their_sources_make_now():
    result = tables("--check")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_stale_table_is_found_and_made_anew(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Before.\n<!-- table: weights -->\n| model | test accuracy |\n| `vgg_bn` | 12.34% |\n<!-- end table -->\nAfter.\n"
    )
    result = tables("--check", str(page))
    assert result.returncode == 1 and "table weights differs from its source" in result.stderr
    assert tables(str(page)).returncode == 0 and tables("--check", str(page)).returncode == 0
    text = page.read_text()
    assert text.startswith("Before.\n") and text.endswith("<!-- end table -->\nAfter.\n")
    assert "12.34%" not in text and "`python train.py experiment=vgg_bn robustness=true`" in text


def test_an_unknown_table_is_one_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table: nonsense -->\n<!-- end table -->\n")
    result = tables("--check", str(page))
    assert (
        result.returncode == 1
        and result.stderr
        == f"error: {page}: unknown table 'nonsense'; known: weights, leaderboard, seeds, config-groups, config-options, demo-load, robustness, reading, zoo-sweep, recipes\n"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_image_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# A heading: with `code`\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-with-code) ![gone](images/gone.png) [bad](other.md#not-a-heading)\n"
        "`[not a link](nowhere.md)` [web](https://example.org/x) [here](#title)\n# Title\n"
    )
    assert broken_links(page) == [
        "page.md: images/gone.png (no such file)",
        "page.md: other.md#not-a-heading (no such heading)",
    ]


def layout_entries(page: Path) -> set[str]:
    """The files and folders that the layout block of docs/contributing.md names, as paths: an entry's
    folder is the one above it with less indentation; an entry may name several (`demo.py, demo.html`)."""
    block = page.read_text().split("## Layout", 1)[1].split("```", 2)[1]
    folders, entries = [], set()
    for line in block.splitlines()[1:]:
        depth = (len(line) - len(line.lstrip())) // 2
        folders = folders[:depth]
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split(", ")
        entries.update("".join(folders) + name for name in names)
        if names[0].endswith("/"):
            folders.append(names[0])
    return entries


def test_the_layout_in_the_contributors_page_names_every_module_where_it_is():
    code = {
        str(path.relative_to(ROOT)) for pattern in ("*.py", "*.html") for path in (ROOT / "digits_zoo").rglob(pattern)
    }
    # a module of the zoo's models needs no line of its own: a model is two files (docs/contributing.md)
    zoo = {p for p in code if p.startswith("digits_zoo/models/") and "@register_model" in (ROOT / p).read_text()}
    named = layout_entries(ROOT / "docs" / "contributing.md")
    assert (
        sorted(code - named - zoo - {p for p in code if p.endswith("__init__.py")}) == []
    )  # each named where it is...
    assert [n for n in sorted(named) if not (ROOT / n).exists()] == []  # ...and nothing that is not there


def test_the_readme_is_a_five_minute_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@pytest.mark.slow
def test_a_stale_number_in_the_prose_is_found_and_made_anew(tmp_path):
    from digits_zoo.models.pretrained import pretrained_info

    page = tmp_path / "page.md"
    page.write_text("vgg_bn reads 99.60%<!-- = manifest:vgg_bn:test_acc --> of the test set.\n")
    result = tables("--check", str(page))
    assert result.returncode == 1 and "value manifest:vgg_bn:test_acc (99.60% -> " in result.stderr
    assert tables(str(page)).returncode == 0 and tables("--check", str(page)).returncode == 0
    shown = f"{100 * pretrained_info('vgg_bn')['test_acc']:.2f}%"
    assert page.read_text() == f"vgg_bn reads {shown}<!-- = manifest:vgg_bn:test_acc --> of the test set.\n"


def test_the_run_pictures_in_the_docs_are_those_of_the_measured_run():
    # docs/measure.py copies them from the run whose accuracy docs/results/measured.json records; each
    # picture's PNG Title holds what it says (plots.save_figure)
    from PIL import Image

    measured = json.loads((ROOT / "docs" / "results" / "measured.json").read_text())["flatten_mlp"]
    accuracy = f"accuracy {100 * measured['test/acc']:.2f}%"
    for name in ("confusion_matrix", "confusion_matrix_normalized"):
        assert accuracy in Image.open(ROOT / "docs" / "images" / f"{name}.png").text["Title"], name


def test_the_demo_picture_shows_the_shipped_model_as_it_is():
    # made by DIGITS_ZOO_DEMO_SCREENSHOT=docs/images/demo.png pytest --all tests/test_demo_browser.py, which
    # writes the model menu's text as the PNG's Title
    from PIL import Image

    from digits_zoo.models.pretrained import pretrained_info

    shown = Image.open(ROOT / "docs" / "images" / "demo.png").text["Title"]
    assert shown == f"vgg_bn ({100 * pretrained_info('vgg_bn')['test_acc']:.2f}% on MNIST test)"
