"""The PyTorch peer (effdet's tf_efficientdet_d0) as timing candidates, for the latency benchmarks."""

import functools


def peer_fns(batch8=False):
    """{label: fn} for effdet's tf_efficientdet_d0, or {} with a message when it is not installed."""
    try:
        import effdet
        import torch
    except ImportError as e:
        print("peer skipped: torch/effdet not importable (%s)" % e)
        return {}
    fns = {}
    # Seeded: with random weights the number of boxes reaching effdet's NMS, and so its end-to-end
    # time, depends on the draw (unseeded runs gave 89 to 137 ms on one machine).
    torch.manual_seed(0)
    x = torch.randn(1, 3, 512, 512)
    for task, label in (("", "effdet network"), ("predict", "effdet end to end")):
        model = effdet.create_model("tf_efficientdet_d0", bench_task=task, pretrained=False,
                                    pretrained_backbone=False).eval()

        def run(model=model, x=x):
            with torch.no_grad():
                return model(x)
        fns[label] = run
        if batch8 and task == "predict":
            fns["effdet end to end batch8"] = functools.partial(run, model, torch.randn(8, 3, 512, 512))
    return fns
