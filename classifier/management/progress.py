"""Progress of training on the command line (train, bootstrap_model)."""

from tqdm import tqdm


class TrainingProgress:
    """tqdm bars for feature caching and each epoch, plus one summary line per epoch (the progress
    events of `training.train` and `services.train_and_register`)."""

    def __init__(self, write):
        self.write = write
        self.bar = None
        self.key = None

    def __call__(self, event: dict) -> None:
        stage = event["stage"]
        if stage == "features":
            bar = self._bar(("features", event["part"]), event["total"], f"frozen layers ({event['part']})", "img")
            bar.update(event["done"] - bar.n)
        elif stage == "batch":
            bar = self._bar(
                ("epoch", event["epoch"]), event["steps"], f"epoch {event['epoch']}/{event['epochs']}", "batch"
            )
            bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
            bar.update(1)
        elif stage == "epoch":
            self.close()
            loss = f"{event['train_loss']:.3f}" if event["train_loss"] is not None else "-"
            parts = [f"epoch {event['epoch']}/{event['epochs']}: train loss {loss}"]
            parts += [
                f"{key.removesuffix('_accuracy').replace('_', ' ', 1)} accuracy {percent(value)}"
                for key, value in event.items()
                if key.endswith("_accuracy")
            ]
            if "elapsed" in event:
                parts.append(f"elapsed {minutes(event['elapsed'])}")
            if "eta" in event:
                parts.append(f"ETA {minutes(event['eta'])}")
            self.write(", ".join(parts))
        elif stage == "int8":
            self.close()
            self.write(f"building the int8 ONNX network ({event['photos']} calibration photos; about 1-2 minutes)")
        elif stage == "step":  # one bar per named step (int8 build)
            bar = self._bar(("step", event["name"]), event["total"], event["name"], event.get("unit", "it"))
            bar.update(event["done"] - bar.n)
        elif stage == "note":
            self.close()
            self.write(event["text"])

    def _bar(self, key, total: int, desc: str, unit: str) -> tqdm:
        if self.key != key:
            self.close()
            self.bar, self.key = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True), key
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.key = None, None


def percent(value) -> str:
    return f"{value:.2%}" if value is not None else "n/a"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
