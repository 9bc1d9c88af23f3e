"""`python -m fastllm <verb>` (used by torchrun: `torchrun ... -m fastllm pretrain ...`)."""

from fastllm.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
