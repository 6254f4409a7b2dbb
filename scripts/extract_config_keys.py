"""Write the configuration keys axolotl and LLaMA-Factory accept, read from their source, to a JSON file
the tests check ``vramfit plan --emit`` against (neither installs quickly on a CPU runner).

    python scripts/extract_config_keys.py AXOLOTL_GIT_DIR LLAMAFACTORY_GIT_DIR > tests/fixtures/tool_config_keys.json

Each argument is a git directory (a clone or a bare mirror); the keys are the annotated fields of the
pydantic / dataclass schemas at its HEAD, with the commit recorded. LLaMA-Factory's training keys are
transformers' TrainingArguments, which the test reads from the installed transformers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*)\s*:\s*[^=]", re.M)
SOURCES = {
    "axolotl": ("src/axolotl/utils/schemas/", "src/axolotl/integrations/liger/args.py"),
    "llamafactory": ("src/llamafactory/hparams/",),
}


def git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def keys(repo: str, paths: tuple[str, ...]) -> list[str]:
    files = [
        f for f in git(repo, "ls-tree", "-r", "--name-only", "HEAD", *paths).split() if f.endswith(".py")
    ]
    found: set[str] = set()
    for f in files:
        found.update(FIELD.findall(git(repo, "show", f"HEAD:{f}")))
    return sorted(found)


def main(argv: list[str]) -> int:
    out = {}
    for (name, paths), repo in zip(SOURCES.items(), argv, strict=True):
        out[name] = {
            "commit": git(repo, "rev-parse", "HEAD").strip(),
            "paths": list(paths),
            "keys": keys(repo, paths),
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
