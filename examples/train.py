"""A small training job logged to mlreg with the unmodified MLflow client.

Reads MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN from the environment, like any MLflow script.
Fits a one-feature linear model by gradient descent (no ML library), logging params, a metric per
epoch, tags and a small artifact."""

import math
import os
import random

import mlflow


def train(lr: float, epochs: int, seed: int) -> None:
    rng = random.Random(seed)
    xs = [rng.uniform(-1, 1) for _ in range(200)]
    ys = [3.0 * x + 0.5 + rng.gauss(0, 0.1) for x in xs]
    w = b = 0.0
    with mlflow.start_run(run_name=f"lr-{lr}") as run:
        mlflow.log_params({"lr": lr, "epochs": epochs, "seed": seed})
        mlflow.set_tags({"model": "linear", "example": "true"})
        for epoch in range(epochs):
            grad_w = sum(2 * (w * x + b - y) * x for x, y in zip(xs, ys)) / len(xs)
            grad_b = sum(2 * (w * x + b - y) for x, y in zip(xs, ys)) / len(xs)
            w, b = w - lr * grad_w, b - lr * grad_b
            mse = sum((w * x + b - y) ** 2 for x, y in zip(xs, ys)) / len(xs)
            mlflow.log_metric("mse", mse, step=epoch)
        mlflow.log_metric("rmse", math.sqrt(mse))
        mlflow.log_dict({"w": w, "b": b}, "model/weights.json")
        print(f"  run {run.info.run_id}: lr={lr} rmse={math.sqrt(mse):.4f}")


def main() -> None:
    mlflow.set_experiment("quickstart")
    for lr in (0.01, 0.1, 0.5):
        train(lr, epochs=30, seed=42)
    best = mlflow.search_runs(order_by=["metrics.rmse ASC"], max_results=1)
    print(f"Best run: {best.iloc[0]['run_id']} (rmse {best.iloc[0]['metrics.rmse']:.4f})")
    print(f"Look at it: MlflowClient().get_run('{best.iloc[0]['run_id']}') against {os.environ['MLFLOW_TRACKING_URI']}")


if __name__ == "__main__":
    main()
