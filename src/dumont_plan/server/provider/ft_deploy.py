"""Deploy a completed fine-tune (§6.8): an instance serving its base model with its adapter.

The intended behaviour, where the platform's deploy always fails: the cheapest free offer of
the GPU asked for (at most `max_price` $/h, one whose boot succeeds) becomes an instance whose
process is the OpenAI-compatible server `serve.py` (`/v1/models`, `/v1/completions`,
`/v1/chat/completions`) on `port`, loading the base model from the server's Hugging Face model
cache (read-only, offline) and the fine-tune's trained adapter, copied into the instance's
workspace (deleting the fine-tune later leaves the deployment working). `endpoint_url` is
`http://127.0.0.1:<port>/v1`: the instance's processes share this machine's network.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path
from sqlite3 import Row
from typing import Any

from dumont_plan.errors import FinetuneError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import finetune_catalog, finetunes
from dumont_plan.server.provider.instances import (
    CreateParams,
    create_instance,
    market_of,
    rented_offer_ids,
    sandbox_of,
)
from dumont_plan.server.provider.market import GPU_MODELS, canonical_gpu, known_gpu
from dumont_plan.server.store import dumps

IMAGE = "vllm/vllm-openai:latest"
ADAPTER_DIR = "adapter"
DISK_SIZE_GB = 50.0


def market_gpu(gpu_type: str) -> str:
    """The market's name of a deploy's short GPU name (RTX4090, A100-80GB, H100, ...)."""
    name = gpu_type.strip()
    if name.upper().startswith("RTX") and not name[3:4].isspace():
        name = "RTX " + name[3:]
    name = name.replace("-80GB", " 80GB").replace(" SXM4", " 80GB").replace(" PCIE", "")
    name = name.replace(" SXM", "")
    if not known_gpu(name):
        raise FinetuneError(
            422, f"unknown gpu_type {gpu_type!r}; use one of {', '.join(GPU_MODELS)}"
        )
    return canonical_gpu(name)


def _offer(state: AppState, user_id: int, gpu: str, max_price: float) -> int:
    """The cheapest free offer of `gpu` within `max_price` whose next boot succeeds."""
    now = time.time()
    taken = rented_offer_ids(state)
    tried = state.store.query(
        "SELECT machine_id, COUNT(*) AS n FROM instances WHERE user_id = ? GROUP BY machine_id",
        (user_id,),
    )
    attempts = {str(r["machine_id"]): int(r["n"]) for r in tried}
    candidates = sorted(
        (m for m in market_of(state).machines if m.gpu_name == gpu and m.offer_id not in taken),
        key=lambda m: (m.dph(now), m.offer_id),
    )
    for machine in candidates:
        if machine.dph(now) > max_price:
            break
        if not machine.boot_fails(attempts.get(machine.machine_id, 0)):
            return machine.offer_id
    cheapest = f"; the cheapest is ${candidates[0].dph(now):.2f}/h" if candidates else ""
    raise FinetuneError(
        400,
        f"no free {gpu} offer at or under ${max_price:g}/h{cheapest}; raise max_price or "
        "pick another gpu_type",
    )


def serve_command(base_model: str, hub: Path, port: int) -> str:
    q = shlex.quote
    env = " ".join(
        [
            f"HF_HUB_CACHE={q(str(hub))}",
            'HF_HOME="$WORKSPACE/.hf-home"',
            "HF_HUB_OFFLINE=1",
            "TRANSFORMERS_OFFLINE=1",
            "TOKENIZERS_PARALLELISM=false",
        ]
    )
    server = f"{q(sys.executable)} -I {q(str(finetune_catalog.SERVER))}"
    args = f'--base-model {q(base_model)} --adapter "$WORKSPACE/{ADAPTER_DIR}" --port {port}'
    return f"exec env {env} {server} {args}"


def deploy(
    state: AppState,
    user_id: int,
    row: Row,
    gpu_type: str,
    name: str | None,
    max_price: float,
    port: int,
) -> dict[str, Any]:
    ft_id = str(row["id"])
    if row["status"] != "completed":
        raise FinetuneError(
            400, f"Job {ft_id} is {row['status']}: only a completed fine-tune can be deployed"
        )
    adapter = finetunes.sandbox_of(state, ft_id).outputs / finetunes.OUTPUT_DIR / "lora_model"
    if not (adapter / "adapter_config.json").is_file():
        raise FinetuneError(400, f"Job {ft_id} has no trained adapter among its outputs")
    gpu = market_gpu(gpu_type)
    offer_id = _offer(state, user_id, gpu, max_price)
    label = name or f"inference-{str(row['name'])[:20]}-{ft_id[:8]}"
    hub = finetune_catalog.hub_cache(state.settings)
    command = serve_command(str(row["base_model"]), hub, port)
    view = create_instance(
        state,
        user_id,
        CreateParams(
            offer_id=offer_id,
            image=IMAGE,
            disk_size=DISK_SIZE_GB,
            label=label,
            ports=(port,),
            onstart_cmd=command,
        ),
    )
    instance_id = int(view["id"])
    shutil.copytree(adapter, sandbox_of(state, instance_id).workspace / ADAPTER_DIR)
    local = finetune_catalog.readable_local_path(state.settings, str(row["base_model"]))
    shared = [str(p) for p in (hub.resolve() if hub.is_dir() else None, local) if p is not None]
    state.store.execute(
        "UPDATE instances SET shared_paths = ? WHERE id = ?", (dumps(shared), instance_id)
    )
    return {
        "success": True,
        "job_id": ft_id,
        "instance_id": instance_id,
        "instance_name": label,
        "gpu_type": gpu,
        "endpoint_url": f"http://127.0.0.1:{port}/v1",
        "message": f"Deploying {row['base_model']} with the adapter of job {ft_id} on instance "
        f"{instance_id}; it answers at the endpoint once the instance is running",
    }
