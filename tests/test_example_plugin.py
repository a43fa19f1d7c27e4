"""Installing a package with a ``feedback_hub`` entry point makes it appear and work.

The example plugin under examples/feedback-hub-vip is really installed (pip,
into a temporary target folder put on PYTHONPATH) and the hub is run in fresh
processes that discover it through its entry point only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src")
    # Build from a copy so no build/ or egg-info folders land in the repository.
    subprocess.run(["cp", "-r", str(ROOT / "examples" / "feedback-hub-vip"), str(build)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(build / "feedback-hub-vip")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT)])
    return env


def test_installed_plugin_is_listed(installed, tmp_path):
    out = subprocess.run([sys.executable, "-m", "hub.cli", "plugins"], env=installed, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("vip "))
    assert "feedback-hub-vip 1.2.0" in line
    hooks = out.split(line, 1)[1].splitlines()[1]
    assert "hub_configure" in hooks and "hub_score_feedback" in hooks


def test_installed_plugin_works_and_can_be_filtered_out(installed, tmp_path):
    script = """
import json, os
from hub.app import create_app
from hub.storage.migrate import upgrade
from hub.engine.accounts import create_token
app = create_app({"database_url": "sqlite:///TMP/hub.db", "executor": "inline", "vip": {"domains": ["bigcorp.nl"]}})
hub = app.extensions["hub"]
upgrade(hub.db.engine)
with hub.db.session() as s:
    token = create_token(s, "t")
r = app.test_client().post("/api/v1/feedback", headers={"Authorization": "Bearer " + token},
    json={"external_id": "1", "channel": "survey", "nps": 8, "customer": {"email": "ceo@bigcorp.nl"}})
print(json.dumps(r.get_json()["risk_reasons"]))
""".replace("TMP", str(tmp_path))
    run = lambda env: json.loads(subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,  # noqa: E731
                                                capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    reasons = run(installed)
    assert {"signal": "vip_customer", "weight": 30.0, "detail": "VIP domain bigcorp.nl"} in reasons
    (tmp_path / "hub.db").unlink()
    reasons = run({**installed, "HUB_LOAD_PLUGINS": "survey_typeform"})
    assert not any(r["signal"] == "vip_customer" for r in reasons)
