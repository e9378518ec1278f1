"""A small training job logged to mlreg with the unmodified MLflow client.

Reads MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN from the environment, like any MLflow script.
Fits a one-feature linear model by gradient descent (no ML library), logging params, a metric per
epoch, tags and the model; then registers the best run's model, points the `champion` alias at it
and loads it back by alias and by semantic version."""

import math
import os
import random

import mlflow
import pandas as pd

MODEL_NAME = "quickstart-linear"


class Linear(mlflow.pyfunc.PythonModel):
    def __init__(self, w: float, b: float):
        self.w, self.b = w, b

    def predict(self, context, model_input: pd.DataFrame) -> list[float]:
        return [self.w * x + self.b for x in model_input["x"]]


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
        mlflow.pyfunc.log_model(name="model", python_model=Linear(w, b))
        print(f"  run {run.info.run_id}: lr={lr} rmse={math.sqrt(mse):.4f}")


def main() -> None:
    mlflow.set_experiment("quickstart")
    for lr in (0.01, 0.1, 0.5):
        train(lr, epochs=30, seed=42)
    best = mlflow.search_runs(order_by=["metrics.rmse ASC"], max_results=1).iloc[0]
    print(f"Best run: {best['run_id']} (rmse {best['metrics.rmse']:.4f})")

    version = mlflow.register_model(f"runs:/{best['run_id']}/model", MODEL_NAME)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    semver = client.get_model_version(MODEL_NAME, version.version).tags["mlreg.version"]
    for uri in (f"models:/{MODEL_NAME}@champion", f"models:/{MODEL_NAME}@{semver}"):
        prediction = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"x": [1.0]}))
        print(f"{uri} -> version {version.version} (semver {semver}) predicts {prediction[0]:.3f} for x=1")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    experiment_id = mlflow.get_experiment_by_name("quickstart").experiment_id
    print(f"Look at it: MlflowClient().get_registered_model('{MODEL_NAME}') against {uri}")
    print(f"Web UI of the experiment: {uri}/#/experiments/{experiment_id} (sign in with MLFLOW_TRACKING_TOKEN)")


if __name__ == "__main__":
    main()
