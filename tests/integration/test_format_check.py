"""scripts/check-format, the format check .ci/run starts with: run on a small git tree of its own
(a copy of the script and of the root .clang-format), it must name a C file that drifts, leave
alone one that does not and files outside the checked folders, and `--fix` must leave nothing
to report."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

FORMATTED = "int f(int a)\n{\n    return a + 1;\n}\n"
DRIFTING = "int g( int a ){ return a+1; }\n"


def run(cwd, *args):
    r = subprocess.run([str(cwd / "scripts" / "check-format")] + list(args), cwd=str(cwd),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=harness.scale(60))
    return r.returncode, r.stdout


def test_check_format_names_drifting_files_and_fix_rewrites_them(tmp):
    if not shutil.which(os.environ.get("CLANG_FORMAT", "clang-format")):
        raise harness.Skip("clang-format is missing (scripts/install-deps installs it)")
    tree = tmp / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(harness.ROOT / "scripts" / "check-format", tree / "scripts" / "check-format")
    shutil.copy(harness.ROOT / ".clang-format", tree / ".clang-format")
    for path, text in (("lib/good.c", FORMATTED), ("config/bad.c", DRIFTING),
                       ("tests/unit/bad.h", DRIFTING), ("docker/outside.c", DRIFTING)):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=str(tree), check=True)
    subprocess.run(["git", "add", "."], cwd=str(tree), check=True)

    code, out = run(tree)
    assert code == 1, out
    last = out.splitlines()[-1]
    assert last.startswith("check-format: 2 of 3 files drift from .clang-format"), out
    assert "config/bad.c" in last and "tests/unit/bad.h" in last, out
    assert "lib/good.c" not in out and "docker/outside.c" not in out, out
    assert "== config/bad.c" in out and "+int g(int a)" in out, out  # what would change

    code, out = run(tree, "--fix")
    assert code == 0 and "2 of 3 files rewritten" in out, out
    assert (tree / "config" / "bad.c").read_text() == FORMATTED.replace("f(", "g(")
    assert (tree / "docker" / "outside.c").read_text() == DRIFTING
    code, out = run(tree)
    assert code == 0 and out.splitlines()[-1] == "check-format: 3 files match .clang-format", out
