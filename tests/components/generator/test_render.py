"""Rendering, checking and writing generated test modules, and what pytest collects from them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.components.generator.families import Family, get_family, list_families
from app.components.generator.render import (
    check_source,
    fix_syntax,
    py_literal,
    render_test_module,
    safe_output_dir,
    write_atomically,
)
from app.core.errors import BadRequest, Conflict, Unprocessable
from app.core.naming import module_filename
from tests.components.generator.support import generate

FAMILIES = list_families()
ALL_TESTS = {
    "test_load_model",
    "test_basic_inference",
    "test_batch_inference",
    "test_model_attributes",
    "test_save_load",
    "test_error_handling",
    "test_resource_cleanup",
}
SELECTIONS = {
    None: ALL_TESTS,
    "basic": {"test_load_model", "test_basic_inference", "test_model_attributes"},
    "comprehensive": {
        "test_load_model",
        "test_basic_inference",
        "test_model_attributes",
        "test_batch_inference",
        "test_save_load",
    },
    "fault_tolerance": {"test_error_handling", "test_resource_cleanup"},
}
HOSTILE_NAMES = [
    'evil"\nimport os; os.system("echo pwned")\n#',
    "a'''b\"\"\"c",
    "trailing\\",
    "{{ model_id }}{% raw %}",
    "bidi\u202eoverride",
    "\U0001f917/emoji-model",
    "nul\x00byte",
    "x" * 300,
]


def run_pytest(
    folder: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run pytest on `folder` in a fresh interpreter, as the Test Suite would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra_env or {})
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--strict-markers"),
            *("-W", "error", "--rootdir", str(folder), *args, str(folder)),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def model_id_of(source: str) -> object:
    """Return the value the rendered module assigns to MODEL_ID."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "MODEL_ID":
            return ast.literal_eval(node.value)
    raise AssertionError("no MODEL_ID assignment")


@pytest.fixture(scope="module")
def rendered_suites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Render every family's example model into one folder."""
    folder = tmp_path_factory.mktemp("suites")
    for family in FAMILIES:
        generate(family.example_model, output_root=folder, hardware=["cpu", "cuda"])
    return folder


@pytest.fixture(scope="module")
def collected(rendered_suites: Path) -> dict[str | None, dict[str, set[str]]]:
    """Collect the rendered suites without and with each marker: {marker: {file: tests}}."""
    result: dict[str | None, dict[str, set[str]]] = {}
    for marker in SELECTIONS:
        args = ["--collect-only", "-q"] + (["-m", marker] if marker else [])
        proc = run_pytest(rendered_suites, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        tests: dict[str, set[str]] = {}
        for line in proc.stdout.splitlines():
            if "::" in line:
                file, test = line.split("::", 1)
                tests.setdefault(Path(file).name, set()).add(test)
        result[marker] = tests
    return result


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
@pytest.mark.parametrize("marker", list(SELECTIONS), ids=str)
def test_rendered_suite_collects_the_tests_each_marker_selects(
    collected: dict[str | None, dict[str, set[str]]], family: Family, marker: str | None
) -> None:
    filename = module_filename(family.example_model)
    assert collected[marker][filename] == SELECTIONS[marker]


def test_rendered_suites_skip_cleanly_without_torch(rendered_suites: Path, tmp_path: Path) -> None:
    # Where torch is installed (for `make test-models`), a package that refuses to import
    # shadows it, so this checks the torch-less behaviour on every machine.
    hidden = tmp_path / "no_torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        'raise ModuleNotFoundError("torch is hidden here", name="torch")\n'
    )
    proc = run_pytest(rendered_suites, "-q", "-rs", extra_env={"PYTHONPATH": str(hidden.parent)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{7 * len(FAMILIES)} skipped" in proc.stdout
    assert "could not import 'torch'" in proc.stdout


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
def test_rendered_module_compiles_and_is_already_normalised(family: Family) -> None:
    source = render_test_module(family.example_model, family, ["cpu"], {})
    check_source(source)
    assert fix_syntax(source) == source
    assert model_id_of(source) == family.example_model
    assert f"transformers.{family.config_class}(**TINY_CONFIG)" in source
    assert f"transformers.{family.auto_class}.from_pretrained(MODEL_ID)" in source


def test_rendered_modules_pass_ruff(tmp_path: Path) -> None:
    # ruff is a dev dependency (`make test` installs it): run it as a module of this Python.
    for family in FAMILIES:
        generate(family.example_model, output_root=tmp_path, hardware=["cpu"])
    generate(HOSTILE_NAMES[0], output_root=tmp_path, template_type="bert")
    generate("org/" + "x" * 150, output_root=tmp_path, template_type="gpt2")
    ruff = [sys.executable, "-m", "ruff"]
    rules = ["--isolated", "--line-length", "100"]
    check = [*ruff, "check", *rules, "--select", "E,F,W,I,B,UP,SIM,RUF", str(tmp_path)]
    lint = subprocess.run(check, capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = [*ruff, "format", "--check", *rules, str(tmp_path)]
    formatted = subprocess.run(fmt, capture_output=True, text=True, check=False)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_model_names_stay_inside_the_model_id_literal(name: str) -> None:
    family = get_family("bert")
    benign = ast.parse(render_test_module("bert-base-uncased", family, ["cpu"], {}))
    source = render_test_module(name, family, ["cpu"], {})
    check_source(source)
    assert source.isascii()
    assert model_id_of(source) == name
    assert len(ast.parse(source).body) == len(benign.body)


@given(st.text())
def test_py_literal_round_trips_any_string_as_ascii(text: str) -> None:
    literal = py_literal(text)
    assert literal.isascii()
    assert ast.literal_eval(literal) == text


def test_py_literal_renders_nested_configs_that_evaluate_back() -> None:
    value = {"a": 1, "b": {"c": [1, 2], "d": None}, "e": ("x",), "f": 0.5, "g": True}
    assert ast.literal_eval(py_literal(value)) == value
    with pytest.raises(ValueError):
        py_literal(float("nan"))
    with pytest.raises(TypeError):
        py_literal(object())


def test_hardware_is_normalised_into_the_rendered_module() -> None:
    source = render_test_module("gpt2", get_family("gpt2"), [" CUDA", "cpu", "cuda"], {})
    assert 'HARDWARE = ("cuda", "cpu")' in source


def test_hardware_defaults_to_cpu() -> None:
    source = render_test_module("gpt2", get_family("gpt2"), None, None)
    assert 'HARDWARE = ("cpu",)' in source


@pytest.mark.parametrize("hardware", [["tpu"], ["cpu", "quantum"], []])
def test_unknown_hardware_is_rejected_with_422(hardware: list[str]) -> None:
    with pytest.raises(Unprocessable) as caught:
        render_test_module("gpt2", get_family("gpt2"), hardware or [" "], {})
    assert caught.value.code == "unsupported_hardware"


def test_hardware_the_family_does_not_support_is_rejected_with_422() -> None:
    with pytest.raises(Unprocessable) as caught:
        render_test_module("t5-small", get_family("t5"), ["webnn"], {})
    assert caught.value.code == "unsupported_hardware"
    assert "encoder-decoder" in caught.value.detail


def test_template_context_sets_batch_size_sequence_length_and_repeats() -> None:
    context = {"batch_size": 16, "sequence_length": 128, "repeats": 5}
    source = render_test_module("bert-base-uncased", get_family("bert"), ["cpu"], context)
    assert "BATCH_SIZE = 16\n" in source
    assert "SEQUENCE_LENGTH = 128\n" in source
    assert "REPEATS = 5\n" in source


@pytest.mark.parametrize(
    "context",
    [{"batch_size": 0}, {"batch_size": True}, {"repeats": "3"}, {"colour": "blue"}],
    ids=["zero", "bool", "string", "unknown-key"],
)
def test_invalid_template_context_is_rejected_with_422(context: dict[str, object]) -> None:
    with pytest.raises(Unprocessable) as caught:
        render_test_module("bert-base-uncased", get_family("bert"), ["cpu"], context)
    assert caught.value.code == "invalid_template_context"


def test_fix_syntax_normalises_endings_tabs_trailing_spaces_and_blank_runs() -> None:
    messy = "\ufeffimport os\r\n\r\n\r\n\r\n\r\ndef f():  \r\n\tif os:\r\n\t\treturn 1   \r\n"
    assert fix_syntax(messy) == "import os\n\n\ndef f():\n    if os:\n        return 1\n"


def test_fix_syntax_adds_a_final_newline_and_drops_edge_blank_lines() -> None:
    assert fix_syntax("\n\nx = 1") == "x = 1\n"


def test_fix_syntax_leaves_multiline_string_contents_alone() -> None:
    source = 'TEXT = """keep  \n\tthis\n\n\n\n\nexactly  """\n'
    assert fix_syntax(source) == source


def test_fix_syntax_raises_422_for_source_it_cannot_repair() -> None:
    with pytest.raises(Unprocessable) as caught:
        fix_syntax("x = 1\ndef broken(:\n    pass\n")
    assert caught.value.code == "invalid_source"
    assert caught.value.extra["line"] == 2


def test_check_source_names_the_file_and_line_of_a_syntax_error() -> None:
    with pytest.raises(Unprocessable) as caught:
        check_source("ok = 1\nok = 2\nnot valid python\n", "test_x.py")
    assert caught.value.code == "invalid_source"
    assert caught.value.status_code == 422
    assert "test_x.py" in caught.value.detail
    assert "line 3" in caught.value.detail


def test_check_source_rejects_nul_bytes() -> None:
    with pytest.raises(Unprocessable) as caught:
        check_source("x = 1\x00\n")
    assert caught.value.code == "invalid_source"


def test_safe_output_dir_resolves_inside_the_root(tmp_path: Path) -> None:
    assert safe_output_dir(tmp_path, None) == tmp_path.resolve()
    assert safe_output_dir(tmp_path, "") == tmp_path.resolve()
    assert safe_output_dir(tmp_path, "a/b") == tmp_path.resolve() / "a" / "b"
    assert safe_output_dir(tmp_path, "a/../c") == tmp_path.resolve() / "c"
    assert safe_output_dir(tmp_path, str(tmp_path / "d")) == tmp_path.resolve() / "d"


@pytest.mark.parametrize("output_dir", ["..", "../sibling", "a/../../x", "/etc", "nul\x00dir"])
def test_safe_output_dir_rejects_paths_that_escape_the_root(
    tmp_path: Path, output_dir: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(BadRequest) as caught:
        safe_output_dir(root, output_dir)
    assert caught.value.status_code == 400
    assert caught.value.code == "path_outside_root"


def test_safe_output_dir_rejects_a_symlink_that_leads_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadRequest) as caught:
        safe_output_dir(root, "link/sub")
    assert caught.value.code == "path_outside_root"


def test_write_atomically_writes_the_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "test_x.py"
    write_atomically(target, "x = 1\n", force=False)
    assert target.read_text() == "x = 1\n"
    assert os.listdir(tmp_path) == ["test_x.py"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_atomically_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "test_x.py"
    target.write_text("original\n")
    with pytest.raises(Conflict) as caught:
        write_atomically(target, "new\n", force=False)
    assert caught.value.status_code == 409
    assert caught.value.code == "file_exists"
    assert "force" in caught.value.detail
    assert target.read_text() == "original\n"
    assert os.listdir(tmp_path) == ["test_x.py"]


def test_write_atomically_replaces_an_existing_file_with_force(tmp_path: Path) -> None:
    target = tmp_path / "test_x.py"
    target.write_text("original\n")
    write_atomically(target, "new\n", force=True)
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["test_x.py"]


def test_write_atomically_refuses_to_replace_a_directory(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").mkdir()
    with pytest.raises(Conflict):
        write_atomically(tmp_path / "test_x.py", "x = 1\n", force=True)


def test_generate_writes_the_module_under_its_file_name(tmp_path: Path) -> None:
    result = generate("openai/whisper-tiny", output_root=tmp_path, output_dir="speech")
    assert result.path == tmp_path.resolve() / "speech" / "test_openai_whisper_tiny.py"
    assert result.family.name == "speech"
    assert result.hardware == ("cpu",)
    content = result.path.read_text()
    assert result.lines == content.count("\n")
    assert result.bytes == len(content.encode())
    assert result.render_ms >= 0
    check_source(content)


def test_generate_without_fix_syntax_writes_the_rendered_source_as_is(tmp_path: Path) -> None:
    result = generate("gpt2", output_root=tmp_path, fix_syntax=False, hardware=["cpu"])
    expected = render_test_module("gpt2", get_family("gpt2"), ["cpu"], {})
    assert result.path.read_text() == expected


def test_generate_conflicts_on_an_existing_file_unless_forced(tmp_path: Path) -> None:
    first = generate("gpt2", output_root=tmp_path)
    with pytest.raises(Conflict) as caught:
        generate("gpt2", output_root=tmp_path, template_context={"batch_size": 8})
    assert caught.value.code == "file_exists"
    assert "BATCH_SIZE = 4\n" in first.path.read_text()
    generate("gpt2", output_root=tmp_path, template_context={"batch_size": 8}, force=True)
    assert "BATCH_SIZE = 8\n" in first.path.read_text()


def test_generate_writes_nothing_for_an_output_dir_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(BadRequest):
        generate("gpt2", output_root=root, output_dir="../elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert list(root.iterdir()) == []


def test_generate_rejects_an_unknown_model_before_writing(tmp_path: Path) -> None:
    with pytest.raises(Unprocessable) as caught:
        generate("acme/mystery", output_root=tmp_path)
    assert caught.value.code == "unknown_architecture"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "  ", "x" * 300], ids=["empty", "blank", "too-long"])
def test_generate_rejects_unusable_model_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        generate(name, output_root=tmp_path, template_type="bert")
    assert caught.value.code == "invalid_model_name"
    assert list(tmp_path.iterdir()) == []


def test_generate_keeps_a_hostile_name_in_a_safe_file_name(tmp_path: Path) -> None:
    name = '../../etc/evil"\nimport os\n'
    result = generate(name, output_root=tmp_path, template_type="gpt2")
    assert result.path.parent == tmp_path.resolve()
    assert model_id_of(result.path.read_text()) == name
