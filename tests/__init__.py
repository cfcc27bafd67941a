import os

# pytest runs tests side by side (-n auto in pyproject.toml), each worker and the processes its tests start using torch's OpenMP
# threads on every core: spinning while those threads wait for each other then costs several times the
# work itself (the real-data Optuna study of docs/training.md beside another: 8 times its time alone).
# Waiting passively changes no result (the same threads split the same sums). Set here, before anything
# imports torch, so that every worker and every process its tests start inherits it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
