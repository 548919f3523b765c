"""Gateway API objects validated against Gateway API's schemas, as packaged on npm
(``@kubernetes-models/gateway-api``: validators generated from Gateway API's Go types, pinned in
tests/gateway_api/package-lock.json and installed by ``make install`` with ``npm ci``). Imported by name:
tests/ is on sys.path through its conftest.

Those validators check types, enums, bounds and required fields, but accept any unknown field, which the API
server would prune without a word (a misspelled filter would silently not exist).
tests/gateway_api/validate.mjs closes that hole: a field the schema's validator never reads is reported as
unknown. The CRD's CEL rules are not part of these schemas; tests/operator/test_routing.py checks the ones our
routes touch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent / "gateway_api"
SCRIPT = PROJECT / "validate.mjs"


class GatewayApiSchemaError(ValueError):
    """The object is not what Gateway API's schema accepts unchanged."""


def problems(objects: list[dict[str, Any]]) -> list[list[str]]:
    """For each object, what the schema refuses or does not know (empty: valid). One node process for all."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed (make install needs Node.js and npm)")
    if not (PROJECT / "node_modules" / "@kubernetes-models" / "gateway-api").is_dir():
        raise RuntimeError(f"{PROJECT}/node_modules is missing: run make install (npm ci)")
    done = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed ({done.returncode}): {done.stderr.strip()}")
    result: list[list[str]] = json.loads(done.stdout)
    return result


def validate(obj: dict[str, Any]) -> None:
    """Raise GatewayApiSchemaError unless ``obj`` is valid for its kind's Gateway API schema, every field
    known."""
    (found,) = problems([obj])
    if found:
        raise GatewayApiSchemaError("; ".join(found))
