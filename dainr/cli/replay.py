"""``dainr replay raw.h5 --host H --port P -o images.h5``: stream a raw file to an MRD server, store the images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dainr.cli.outputs import Output, add_overwrite_argument, check_outputs
from dainr.config import available_presets
from dainr.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("replay", description="Send an ISMRMRD raw file over the MRD streaming protocol (as "
                                             "gadgetron_ismrmrd_client does) and store the returned images as "
                                             "<group>/image_<series>.")
    p.add_argument("input", type=Path, help="ISMRMRD raw file (.h5)")
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="ISMRMRD image file: created, or given the group --group if it is an image file")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9002, help="server port (default 9002)")
    p.add_argument("--config", default="default",
                   help=f"config name sent as CONFIG_FILE: a preset ({', '.join(available_presets())}), a YAML or "
                        "chain XML the server knows, or default (default: default)")
    p.add_argument("--config-local", type=Path, metavar="FILE",
                   help="send this file's text as CONFIG_TEXT instead (YAML of config keys, or chain XML)")
    p.add_argument("--input-group", default="dataset", help="HDF5 group of the raw data (default dataset)")
    p.add_argument("--group", help="output group (default: date and time, like gadgetron_ismrmrd_client)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="give up when the server is silent this many seconds (default 600)")
    add_overwrite_argument(p, "the group --group of an image file, else the file")
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dainr.mrd import write_images
    from dainr.mrd.images import image_file_groups
    from dainr.server.replay import default_group, replay

    if args.timeout <= 0:
        raise ConfigError("--timeout must be > 0")
    group = args.group or default_group()
    check_outputs([Output(args.output, "-o", group=group)], [(args.input, "the input raw file")], args.overwrite)
    text = None
    if args.config_local is not None:
        try:
            text = args.config_local.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read --config-local {args.config_local}: {exc.strerror}") from None
    bars: list[tqdm] = []  # drawn from the first report on, so that a refusal before it stays one line

    def progress(sent: int, total: int, images: int) -> None:
        # Counts the images that came back (their rate includes the server's compute); the acquisitions sent are
        # a note, with no rate of their own, since the report comes when an image or a second of silence does.
        if not bars:
            bars.append(tqdm(desc="images back", unit=" images", disable=args.quiet, file=sys.stderr,
                             dynamic_ncols=True))
        bar = bars[0]
        bar.n = images
        bar.set_postfix_str(f"{sent}/{total} acquisitions sent", refresh=False)
        bar.refresh()

    try:
        result = replay(args.input, args.host, args.port, config=args.config, config_text=text,
                        group=args.input_group, timeout=args.timeout, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    for t in result.texts:
        print(f"server: {t}", file=sys.stderr)
    if not result.images:
        print(f"dainr replay: the server returned no images for {args.input}", file=sys.stderr)
        return 1
    add_group = args.output.exists() and image_file_groups(args.output) is not None
    write_images(args.output, result.images, group, result.header_xml, new_group=add_group, replace=args.overwrite)
    series = sorted({int(im.image_series_index) for im in result.images})
    first = f"{result.first_image_s:.2f} s" if result.first_image_s is not None else "-"
    print(f"wrote {len(result.images)} images to {args.output} (group {group}, "
          f"{', '.join(f'image_{s}' for s in series)}); {result.acquisitions} acquisitions sent, "
          f"{result.seconds:.2f} s in all, first images after {first}")
    return 0
