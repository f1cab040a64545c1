"""Placeholder: filled in by the playbook work."""

from __future__ import annotations
