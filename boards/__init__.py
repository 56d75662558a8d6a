"""Placeholder: see the project issues; nothing here yet."""
