"""``dainr render model.pt -o images.h5``: render fitted DA-INR models again, without refitting.

The model file is written by ``dainr recon --save-model``; it holds every slice's networks, features, support,
config, geometry and per-frame acquisition headers (:mod:`dainr.recon.model_file`). With no options the images are
the ones the fit wrote (same pixels on the same kind of device, same headers); ``--render-frames``,
``--render-matrix``, ``--motion`` and ``--jacobian`` render what :mod:`dainr.recon.rendering` describes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dainr.errors import ConfigError, InputError


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    """``--render-frames``, ``--render-matrix``, ``--motion``, ``--jacobian``: the same in ``dainr recon`` and
    ``dainr render`` (:class:`dainr.data.RenderRequest`)."""
    p.add_argument("--render-frames", type=int, default=0, metavar="N",
                   help="DA-INR: render N frames spread from the first acquired frame to the last (frame k at "
                        "k/(N-1) of that interval; N = r(F-1)+1 keeps every acquired frame); default: the acquired "
                        "frames")
    p.add_argument("--render-matrix", type=int, default=0, metavar="M",
                   help="DA-INR: render M rows (columns scaled alike) over the same field of view; default: the "
                        "acquired matrix")
    p.add_argument("--motion", action="store_true",
                   help="DA-INR: also write the displacement to frame 0 in mm (series + 1, channels x, y)")
    p.add_argument("--jacobian", action="store_true",
                   help="DA-INR: also write the deformation's Jacobian determinant (series + 2)")


def render_request(args: argparse.Namespace):
    """The :class:`~dainr.data.RenderRequest` of :func:`add_render_arguments`' options."""
    from dainr.data import RenderRequest

    return RenderRequest(frames=args.render_frames, matrix=args.render_matrix, motion=args.motion,
                         jacobian=args.jacobian)


def written(images: list, output: Path, group: str) -> str:
    """The line a command prints after writing ``images``: how many, where, and which series."""
    series = sorted({int(im.image_series_index) for im in images})
    return f"wrote {len(images)} images to {output} (group {group}, {', '.join(f'image_{n}' for n in series)})"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help="render saved DA-INR models (dainr recon --save-model) into ISMRMRD images",
                       description="Render the fitted DA-INR models of a file written by dainr recon --save-model, "
                                   "without refitting: the same images, or other frame counts, matrices and the "
                                   "motion series.")
    p.add_argument("model", type=Path, help="model file written by dainr recon --save-model")
    p.add_argument("-o", "--output", required=True, type=Path, help="ISMRMRD image file to write (.h5)")
    add_render_arguments(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--group", default="dataset", help="HDF5 group for the output images (default dataset)")
    p.add_argument("--series", type=int, help="image_series_index of the output (default: the one of the fit)")
    p.add_argument("--complex", action="store_true", help="write complex images instead of magnitude")
    p.add_argument("--slice", dest="slices", type=int, action="append", metavar="N",
                   help="render only this idx.slice (repeatable)")
    p.add_argument("--preview", type=Path, help="write a quick-look animated .gif (or .png)")
    return p


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from dainr import mrd
    from dainr.data import ReconResult
    from dainr.preview import write_preview
    from dainr.recon.device import resolve_device
    from dainr.recon.model_file import load_models
    from dainr.recon.rendering import render_slice
    from dainr.stream import ReconSettings, SliceJob
    from dainr.stream.pipeline import slice_images

    if args.output.resolve() == args.model.resolve():
        raise ConfigError("the output file must differ from the model file")
    request = render_request(args)
    device = resolve_device(args.device)
    saved = load_models(args.model, device)
    chosen = saved.slices
    if args.slices:
        have = [s.cine.slice_index for s in saved.slices]
        missing = set(args.slices) - set(have)
        if missing:
            raise InputError(f"--slice {sorted(missing)} not in {args.model} (slices: {have})")
        chosen = [s for s in saved.slices if s.cine.slice_index in set(args.slices)]
    images, cines = [], []
    for s in chosen:
        t0 = time.perf_counter()
        settings = ReconSettings(config=dataclasses.replace(s.config, device=str(device)), render=request,
                                 series_index=saved.series_index if args.series is None else args.series,
                                 complex_output=args.complex)
        out = render_slice(s.fitted, request, s.cine.geometry.fov_mm[:2])
        result = ReconResult(images=out.images, method="dainr", seconds=time.perf_counter() - t0,
                             motion=out.motion, jacobian=out.jacobian,
                             frame_positions=out.positions if request.frames else None)
        images += slice_images(SliceJob(cine=s.cine, image_index_start=s.image_index_start), result, settings)
        cines.append(out.images)
        print(f"slice {s.cine.slice_index}: {out.images.shape[0]} frames at {out.images.shape[1]}×"
              f"{out.images.shape[2]}, {result.seconds:.2f} s")
    mrd.write_images(args.output, images, group=args.group, header_xml=saved.header_xml)
    print(written(images, args.output, args.group))
    if args.preview:
        write_preview(args.preview, cines)
        print(f"wrote preview {args.preview}")
    return 0
