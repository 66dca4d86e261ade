"""``python -m mucode``: the CLI, for launchers that run modules (``accelerate launch -m mucode verifier train``)."""

from mucode.cli import main

if __name__ == "__main__":
    main()
