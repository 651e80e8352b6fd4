"""The README cannot drift: its set-up commands, every CLI example, flag and linked file exist."""

import functools
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def console_scripts():
    """{command: 'module:function'} from setup.py's entry points."""
    return dict(re.findall(r'"([\w-]+)=([\w.]+:\w+)"', _read("setup.py")))


def code_lines(markdown):
    """Every line of every fenced code block, continuation backslashes joined."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, re.S):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def cli_examples(markdown, scripts):
    """[(command, [flags])] for each use of one of our commands in the README's code blocks."""
    examples = []
    for line in code_lines(markdown):
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                words = part.split()
            for i, word in enumerate(words):
                if word in scripts:
                    flags = [w.split("=")[0][2:] for w in words[i + 1:] if w.startswith("--")]
                    examples.append((word, flags))
    return examples


@functools.lru_cache(maxsize=None)
def known_flags(command):
    """Flag names the command accepts, read from its --helpfull in a subprocess."""
    module, function = console_scripts()[command].split(":")
    code = "import sys; sys.argv = ['%s', '--helpfull']; import %s as m; m.%s()" % (command, module, function)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    names = set(re.findall(r"^\s+--(?:\[no\])?([\w.]+)", out.stdout + out.stderr, re.M))
    assert names, "no flags read from %s --helpfull:\n%s" % (command, (out.stdout + out.stderr)[-2000:])
    return names


def test_the_two_setup_commands_come_first_and_ci_runs_the_second():
    readme = _read("README.md")
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert first_block[0].startswith("pip install -e . && efficientdet-demo")
    assert first_block[1].startswith('pip install -e ".[test]" && python -m pytest')
    # CI runs the same command (pip may be told to be quiet there).
    assert first_block[1] in _read(".ci/run").replace("pip install -q ", "pip install ")
    assert readme.index("```bash") < readme.index("\n## ")  # before any other section


def test_every_cli_example_names_a_real_command_and_real_flags():
    scripts = console_scripts()
    examples = cli_examples(_read("README.md"), scripts)
    used = {command for command, _ in examples}
    assert {"efficientdet-demo", "efficientdet-train", "efficientdet-eval", "efficientdet-export"} <= used
    for command, flags in examples:
        unknown = [flag for flag in flags if flag not in known_flags(command)]
        assert not unknown, "README: %s has no flag(s) %s" % (command, unknown)


def test_every_cli_is_documented_in_the_readme():
    readme = _read("README.md")
    missing = [command for command in console_scripts() if "`%s`" % command not in readme and command not in
               " ".join(code_lines(readme))]
    assert not missing, "README does not mention %s" % missing


@pytest.mark.parametrize("document", ["README.md", "docs/architecture.md", "docs/conventions.md"])
def test_linked_and_named_files_exist(document):
    text = _read(document)
    base = os.path.dirname(os.path.join(ROOT, document))
    links = [target for target in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in target]
    for target in links:
        assert os.path.exists(os.path.join(base, target)), "%s links to missing %s" % (document, target)
    # Repository paths written as code, e.g. `hparams/defaults.yaml` or `efficientdet_tf/model/bifpn.py`.
    for path in re.findall(r"`((?:efficientdet_tf|tfrecord_tools|hparams|benchmarks|notebooks|docs|tests)/[\w./-]+)`", text):
        assert os.path.exists(os.path.join(ROOT, path.rstrip("/"))), "%s names missing %s" % (document, path)
