"""Helpers shared by the deploy/images/examples tests (imported by name; tests/deploy is on sys.path)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
