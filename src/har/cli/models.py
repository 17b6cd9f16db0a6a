"""``har export``, ``har models`` and ``har weights``: the model zoo and its files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..defaults import DEFAULT_MODEL
from ..fsutil import display_path
from ..text import printable
from . import ExitCode, UsageError, add_command


EXPORT_EPILOG = """\
examples:
  har export onnx -o r3d34.onnx                         the default model, fp32 ONNX
  har export openvino -o r3d34.xml                      OpenVINO IR (.xml and .bin)
  har export openvino -o r3d34-int8.xml --precision int8 --calibrate videos/
                                                        int8, calibrated on your videos
  har export onnx -o falls.onnx --weights runs/falls/model.pth   a trained model, its labels
  har predict video.mp4 --weights r3d34.xml             run an exported file directly
"""

MODELS_EPILOG = """\
examples:
  har models                                 name, weights source, accuracy, description
  har models --json                          also URLs, sizes, sha256, presets, sources
  har predict video.mp4 --model r3d18-k400   use another model of the list
"""

CACHE_EPILOG = """\
examples:
  har cache                                  what is cached (weights, exports, compiled)
  har cache clean --keep-weights             remove derived files, keep the downloads
  har cache clean --older-than 30            remove files not modified for 30 days
  HAR_HOME=/data/har-cache har cache         another cache folder
"""

WEIGHTS_EPILOG = """\
examples:
  har weights fetch r3d34-k400               download ahead (e.g. before going offline)
  har weights fetch r3d34-k400 tv-r3d18-k400 several at once
  har weights list                           the cached files and the models that use them
  har weights verify                         re-check sizes and sha256 of every cached file
"""


def register(sub) -> None:
    e = add_command(sub, "export", help="export a model to ONNX or OpenVINO IR",
                    description="Export a zoo model with its weights, dynamic batch axis: "
                                "input 'clips' (N, 3, T, H, W), outputs 'logits' (N, C) and "
                                "'features' (N, D); the labels, preset, model name, weights "
                                "sha256 and har version go into the file's metadata, so "
                                "`har predict --weights FILE` runs it directly.",
                    epilog=EXPORT_EPILOG)
    e.add_argument("format", choices=("onnx", "openvino"))
    e.add_argument("-o", "--output", required=True,
                   help="output file (.onnx, or .xml for OpenVINO; a .bin is written beside it)")
    e.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    e.add_argument("--weights", help="weights file or URL (default: the cached download)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="OpenVINO IR precision (default fp32; int8: NNCF post-training "
                        "quantization)")
    e.add_argument("--calibrate", metavar="DIR",
                   help="int8: calibrate on clips from the videos in DIR (default: "
                        "synthetic clips, 64 for 16x112x112 models, fewer for bigger "
                        "clips; docs/performance.md)")
    e.set_defaults(func=cmd_export)

    m = add_command(sub, "models", help="list the available models", epilog=MODELS_EPILOG)
    m.add_argument("--json", action="store_true", help="print the registry as JSON")
    m.set_defaults(func=cmd_models)

    c = add_command(sub, "cache", help="list or clean har's cache (weights, exports, "
                    "compiled models)", epilog=CACHE_EPILOG)
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION")
    c.set_defaults(func=cmd_cache_list)
    cl = add_command(csub, "list", help="what is cached, with sizes and totals (default)")
    cl.set_defaults(func=cmd_cache_list)
    cc = add_command(csub, "clean", help="remove har's cached files")
    cc.add_argument("--older-than", type=float, metavar="DAYS",
                    help="only files not modified for DAYS days")
    cc.add_argument("--keep-weights", action="store_true",
                    help="keep downloaded weights (remove only derived files)")
    cc.set_defaults(func=cmd_cache_clean)

    w = add_command(sub, "weights", help="download, list and verify cached weights",
                    description="Manage the weights cache ($HAR_HOME, else "
                                "$XDG_CACHE_HOME/har, else ~/.cache/har).",
                    epilog=WEIGHTS_EPILOG)
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    f = add_command(wsub, "fetch", help="download a model's weights into the cache")
    f.add_argument("names", nargs="+", metavar="NAME", help="model name(s) (`har models`)")
    f.add_argument("--force", action="store_true", help="download again even if cached")
    f.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    f.set_defaults(func=cmd_weights_fetch)
    v = add_command(wsub, "verify", help="re-check weights against their published digests",
                    description="Re-check weights files against the digests their publishers "
                                "give, and say which digest was checked and where it comes "
                                "from. Without arguments: every cached file.",
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="examples:\n  har weights verify\n  har weights verify i3d-k400\n"
                           "  har weights verify ~/Downloads/resnet-34_kinetics.onnx")
    v.add_argument("targets", nargs="*", metavar="NAME|FILE",
                   help="a model name (its cached or installed weights) or a weights file")
    v.set_defaults(func=cmd_weights_verify)
    ls = add_command(wsub, "list", help="show the cached weights files")
    ls.set_defaults(func=cmd_weights_list)
def cmd_export(args: argparse.Namespace) -> int:
    from . import UsageError

    if args.format == "onnx" and args.precision != "fp32":
        raise UsageError("har export onnx writes fp32; --precision fp16/int8 is for openvino")
    if args.calibrate and args.precision != "int8":
        raise UsageError("--calibrate goes with --precision int8")
    if args.calibrate and not Path(args.calibrate).is_dir():
        raise UsageError(f"--calibrate {args.calibrate}: not a folder of videos")
    from ..models.zoo import load_model
    from ..runtimes import export_onnx, export_openvino

    model = load_model(args.model, weights=args.weights)
    preset = model.har_info.preset
    shape = (preset.clip_len, preset.crop, preset.crop)
    out = Path(args.output)
    if args.format == "onnx":
        export_onnx(model, out, shape)
    else:
        calib = None
        if args.precision == "int8":
            from ..runtimes.quantize import (DEFAULT_CALIBRATION_CLIPS, default_calibration,
                                             default_calibration_size, video_calibration)

            # The synthetic default is the one predict's cached int8 IR uses (fewer
            # clips for big presets: default_calibration_size).
            n = default_calibration_size(preset)
            where = (f"up to {DEFAULT_CALIBRATION_CLIPS} clips from the videos in "
                     f"{display_path(args.calibrate)}" if args.calibrate else
                     f"{n} synthetic clips (--calibrate DIR for your own videos)")
            print(f"note: int8: calibrating on {where}; this takes a while",
                  file=sys.stderr)
            calib = (video_calibration(args.calibrate, preset) if args.calibrate
                     else default_calibration(preset, n))
        out = export_openvino(model, out, shape, compress_to_fp16=args.precision == "fp16",
                              precision="int8" if args.precision == "int8" else "fp32",
                              calibration=calib)
    print(f"wrote {out} ({args.format}, input clips (N, 3, {shape[0]}, {shape[1]}, {shape[2]}))")
    return ExitCode.OK


def cmd_models(args: argparse.Namespace) -> int:
    from ..models.zoo import DEFAULT_MODEL, REGISTRY

    if args.json:
        print(json.dumps([e.to_dict() for e in REGISTRY.values()], indent=2))
        return ExitCode.OK

    def acc(e) -> str:
        if e.top1 is None:
            return "paper, Table 3" if "Table 3" in e.accuracy else "not reported"
        top5 = f" / {e.top5}%" if e.top5 is not None else ""
        src = "Hara et al. 2018" if e.name.startswith("r3d") else "torchvision"
        return f"{e.top1}%{top5} ({src})"

    rows = [("name", "weights", "top-1 / top-5 (Kinetics-400 val)", "model")]
    rows += [(e.name + (" *" if e.name == DEFAULT_MODEL else ""), e.weights_source, acc(e),
              e.description) for e in REGISTRY.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths)) + "  " + r[3])
    print("* default model. `har models --json` gives URLs, sizes, sha256, presets and "
          "the accuracy sources.")
    return ExitCode.OK


def cmd_cache_list(args: argparse.Namespace) -> int:
    from ..cache import cache_entries, human, totals
    from ..defaults import cache_dir

    entries = cache_entries()
    print(f"{cache_dir()}:")
    if not entries:
        print("  (empty)")
        return ExitCode.OK
    for e in entries:
        print(f"  {e.kind:<9} {human(e.size):>9}  {e.path.relative_to(cache_dir())}")
    tot = totals(entries)
    for kind, (n, b) in tot.items():
        print(f"  total {kind:<9} {n:>4} file(s) {human(b):>9}")
    print(f"  total {sum(n for n, _ in tot.values())} file(s), "
          f"{human(sum(b for _, b in tot.values()))}")
    return ExitCode.OK


def cmd_cache_clean(args: argparse.Namespace) -> int:
    from ..cache import clean, human

    n, freed = clean(args.older_than, keep_weights=args.keep_weights)
    print(f"removed {n} file(s), {human(freed)}")
    return ExitCode.OK


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from ..models.zoo import get_entry
    from ..weights import fetch

    for name in args.names:
        entry = get_entry(name)
        path = fetch(entry, force=args.force,
                     progress=False if args.no_progress else None)
        print(f"{entry.name}: {path}")
    return ExitCode.OK


def cmd_weights_list(args: argparse.Namespace) -> int:
    from ..cache import cache_entries, human
    from ..models.zoo import REGISTRY
    from ..weights import list_cache, weights_dir

    rows = list_cache(REGISTRY)
    derived = [e for e in cache_entries() if e.kind != "weights"]
    other = (f"; the cache also holds {len(derived)} derived file(s) "
             f"({human(sum(e.size for e in derived))}: exports, compiled models; `har cache`)"
             if derived else "")
    if not rows:
        print(f"no weights cached in {weights_dir()} (`har weights fetch NAME`){other}")
        return ExitCode.OK
    print(f"{weights_dir()}:")
    for r in rows:
        used = ", ".join(r.models) if r.models else "(--weights URL download)"
        if r.path.name.endswith(".part"):
            used = "(incomplete download)"
        print(f"  {r.path.relative_to(weights_dir())}  {r.size:,} bytes  {used}")
    if other:
        print(other[2:].capitalize())
    return ExitCode.OK


def _verify_targets(targets) -> list[tuple[Path, str]]:
    """(file, status) for each NAME or FILE: a model's weights where har finds them, or
    a file checked against the registry entry of the same name (else every published
    digest)."""
    from ..models.zoo import REGISTRY
    from ..weights import cached_path, package_file, verify_file

    out = []
    by_name = {wf.filename: wf for e in REGISTRY.values() for wf in e.weights}
    for target in targets:
        if target in REGISTRY:
            found = False
            for wf in REGISTRY[target].weights:
                path = package_file(wf) if wf.package else cached_path(wf)
                if path is not None and path.is_file():
                    out.append((path, verify_file(path, wf)))
                    found = True
            if not found:
                out.append((Path(target), "no weights installed or cached for this model "
                                          f"(`har weights fetch {target}`)"))
            continue
        path = Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"{printable(target)}: neither a model name (`har models`) nor "
                             "a file")
        wf = by_name.get(path.name)
        if wf is not None:
            out.append((path, verify_file(path, wf)))
            continue
        status = "no published digest for a file of this name"
        for cand in by_name.values():
            st = verify_file(path, cand) if cand.digests else ""
            if st.startswith("ok"):
                status = f"{st} (matches {cand.filename})"
                break
        out.append((path, status))
    return out


def cmd_weights_verify(args: argparse.Namespace) -> int:
    from ..models.zoo import REGISTRY
    from ..weights import verify_cache, weights_dir

    if args.targets:
        rows = _verify_targets(args.targets)
        for path, status in rows:
            print(f"{printable(path)}: {printable(status)}")
        bad = sum(st.startswith("BAD") for _, st in rows)
        if bad:
            print(f"har: {bad} file(s) do not match their published digest: delete them and "
                  "fetch or install them again", file=sys.stderr)
            return ExitCode.MODEL  # weights that fail their check (README: exit codes)
        return ExitCode.OK
    rows = verify_cache(REGISTRY)
    if not rows:
        print(f"no weights cached in {weights_dir()}")
        return ExitCode.OK
    bad = 0
    for r in rows:
        bad += r.status.startswith("BAD")
        print(f"{printable(r.path)}: {printable(r.status)}")
    if bad:
        print(f"har: {bad} damaged file(s): delete them and run `har weights fetch NAME`, "
              "or pass a good copy with --weights FILE", file=sys.stderr)
        return ExitCode.MODEL
    return ExitCode.OK
