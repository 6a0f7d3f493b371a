"""What a ``crdr eval`` run is over and with which settings: the image set and :class:`EvalConfig`.

The settings are checked here and only here (:meth:`EvalConfig.check`, called by
:func:`crdr_codec.eval.run.run_eval` before any work); :meth:`EvalConfig.from_options`
turns the command line's text options (value lists, anchor names, ``NAME=LIST``
overrides) into a config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from crdr_codec.config import check_refine
from crdr_codec.errors import ImageError, ParameterError
from crdr_codec.eval.anchors import ANCHORS, parse_anchor_names, parse_anchor_qualities
from crdr_codec.formats import IMAGE_EXTENSIONS

__all__ = ["EvalConfig", "list_images", "IMAGE_EXTENSIONS"]

def list_images(data_dir: Path, max_images: Optional[int] = None) -> List[Path]:
    """Image files directly inside ``data_dir`` (by extension), sorted by name."""
    if not data_dir.is_dir():
        raise ImageError(f"{data_dir}: not a folder")
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ImageError(f"{data_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    if max_images is not None:
        files = files[: max(1, max_images)]
    return files


@dataclass
class EvalConfig:
    """Settings of one ``crdr eval`` run (see the command's help for each option)."""

    data_dir: Path
    out_dir: Path
    qs: List[float] = field(default_factory=lambda: [round(0.25 * i, 2) for i in range(17)])
    betas: List[float] = field(default_factory=lambda: [0.0, 2.56, 3.84])
    anchors: List[str] = field(default_factory=lambda: list(ANCHORS))
    anchor_qualities: Dict[str, List[int]] = field(default_factory=dict)
    weights: Optional[str] = None
    device: str = "cpu"
    jobs: int = 1
    threads: Optional[int] = None
    fid: bool = True
    patch_size: int = 256
    crop_bpp: float = 0.25
    crop_image: Optional[str] = None
    crop_size: int = 256
    max_images: Optional[int] = None
    plots: bool = True
    quiet: bool = False
    anchors_from: Optional[Path] = None
    refine: int = 0

    def qualities(self, anchor: str) -> List[int]:
        """The quality sweep of ``anchor`` (the override, or its default)."""
        return list(self.anchor_qualities.get(anchor, ANCHORS[anchor].qualities))

    def check(self) -> None:
        """Refuse settings a run cannot use; messages name the command-line option.

        Raises:
            ParameterError: a count or size below its minimum, a non-positive crop rate,
                an override for an unknown anchor or with a quality outside its range,
                refinement steps outside [0, REFINE_MAX_STEPS].
        """
        check_refine(self.refine)
        if self.jobs < 1:
            raise ParameterError(f"--jobs must be positive, got {self.jobs}")
        if self.patch_size < 16:
            raise ParameterError(f"--patch-size must be at least 16, got {self.patch_size}")
        if self.crop_size < 1:
            raise ParameterError(f"--crop-size must be positive, got {self.crop_size}")
        if not self.crop_bpp > 0:
            raise ParameterError(f"--crop-bpp must be positive, got {self.crop_bpp:g}")
        for name, qualities in self.anchor_qualities.items():
            if name not in ANCHORS:
                raise ParameterError(f"--anchor-q: unknown anchor '{name}'; choose from {', '.join(ANCHORS)}")
            for quality in qualities:
                ANCHORS[name].check_quality(quality)

    @classmethod
    def from_options(
        cls,
        data_dir: str | Path,
        out_dir: str | Path,
        q: str = "0:4:0.25",
        beta: str = "0,2.56,3.84",
        anchors: str = "jpeg,webp,avif,jxl,heic",
        anchor_q: Sequence[str] = (),
        anchors_from: Optional[str | Path] = None,
        **settings,
    ) -> "EvalConfig":
        """A config from the command line's text options.

        Args:
            q, beta: value lists (``"0:4:0.25"``, ``"0,2.56,3.84"``), checked against the
                q and beta ranges.
            anchors: comma list of anchor names, or ``"none"``.
            anchor_q: ``NAME=LIST`` quality-sweep overrides.
            settings: the other :class:`EvalConfig` fields, as they are.

        Raises:
            ParameterError: malformed or out-of-range values, unknown anchors.
        """
        from crdr_codec.config import BETA_MAX, BETA_MIN, Q_MAX, Q_MIN
        from crdr_codec.eval import parse_values

        return cls(
            data_dir=Path(data_dir), out_dir=Path(out_dir),
            qs=parse_values(q, "--q", Q_MIN, Q_MAX),
            betas=parse_values(beta, "--beta", BETA_MIN, BETA_MAX),
            anchors=parse_anchor_names(anchors),
            anchor_qualities=parse_anchor_qualities(anchor_q),
            anchors_from=Path(anchors_from) if anchors_from else None,
            **settings,
        )
