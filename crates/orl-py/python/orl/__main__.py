"""``python -m orl --version`` prints the package's version; ``python -m orl`` lists what it has."""

import argparse

from . import __version__, algorithms, environments, MUJOCO_ENABLED


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m orl", description="orl: offline RL in Rust")
    p.add_argument("--version", action="version", version=f"orl {__version__}")
    p.parse_args()
    print(f"orl {__version__}")
    print("algorithms: " + ", ".join(name for name, _ in algorithms()))
    print("environments: " + ", ".join(environments()))
    if not MUJOCO_ENABLED:
        print("(MuJoCo environments: build with the `mujoco` feature)")


if __name__ == "__main__":
    main()
