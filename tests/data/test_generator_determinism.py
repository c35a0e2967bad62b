"""Same seed, same bytes; another seed, other data."""

from __future__ import annotations

from pathlib import Path

from data.generator import GeneratorConfig, generate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    for fmt in ("csv", "mixed"):
        cfg = GeneratorConfig(scale=0.005, seed=3, format=fmt)
        generate(cfg, tmp_path / f"a_{fmt}")
        generate(cfg, tmp_path / f"b_{fmt}")
        a, b = _files(tmp_path / f"a_{fmt}"), _files(tmp_path / f"b_{fmt}")
        assert a.keys() == b.keys() and len(a) > 20
        assert a == b


def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    generate(GeneratorConfig(scale=0.005, seed=3), tmp_path / "a")
    generate(GeneratorConfig(scale=0.005, seed=4), tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    differing = [k for k in a.keys() & b.keys() if a[k] != b[k]]
    assert len(differing) >= 0.8 * len(a.keys() & b.keys())
