"""Time of ``ane_rewrite.optimize`` next to the time of coremltools conversion, BERT-base size.

    python benchmarks/optimize_vs_convert.py [--layers 12] [--seq-len 128] [--repeats 3]

BERT-base (12 layers, hidden 768, 12 heads, random weights from the config) with a
sequence-classification head. Reports the median over ``--repeats`` runs of:
  optimize   capture (torch.export + decompositions) and all passes
  convert    ane_rewrite.export of the *baseline* model (torch.export + coremltools), i.e. what
             a user pays to convert the model as it is
and their ratio. Not a unit test: a figure to report with the command that produced it.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    import ane_rewrite
    from ane_rewrite.frontend import models

    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=args.layers, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    example = models.example_inputs(model, seq_len=args.seq_len)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"BERT {args.layers} layers, hidden {config.hidden_size}, {params:.1f} M parameters, "
          f"seq {args.seq_len}, batch 1, torch threads {torch.get_num_threads()}")

    opt_times, conv_times = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        fast = ane_rewrite.optimize(model, example)
        opt_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        ane_rewrite.export(model, example)
        conv_times.append(time.perf_counter() - t)
        print(f"  run {i + 1}: optimize {opt_times[-1]:.2f} s, coremltools conversion {conv_times[-1]:.2f} s",
              flush=True)
    opt, conv = statistics.median(opt_times), statistics.median(conv_times)
    print(f"median: optimize {opt:.2f} s, conversion {conv:.2f} s, optimize/conversion = {opt / conv:.2f}")

    from ane_rewrite.frontend.capture import capture
    from ane_rewrite.passes import default_pipeline

    t = time.perf_counter()
    gm = capture(model, example)
    t_capture = time.perf_counter() - t
    t = time.perf_counter()
    default_pipeline()(gm)
    t_passes = time.perf_counter() - t
    print(f"optimize breakdown (one more run): capture {t_capture:.2f} s, passes {t_passes:.2f} s")
    for result in fast.ane_report.results:
        print(f"  {result.summary()}")


if __name__ == "__main__":
    main()
