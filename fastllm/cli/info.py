"""`fastllm info`: what this build can do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fastllm.cli.main import Command


@dataclass
class InfoConfig:
    json: bool = field(default=False, metadata={"help": "print machine-readable JSON"})


def run(config: InfoConfig) -> int:
    from fastllm.kernels import info

    report = info()
    if config.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        if key == "ops":
            print("ops:")
            for op, summary in value.items():
                print(f"  {op}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
        else:
            print(f"{key}: {value}")
    return 0


COMMANDS = {None: Command("Show the native build, CPU instruction-set path, threads and the backend "
                          "each kernel op uses.", InfoConfig, run)}
