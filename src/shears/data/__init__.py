"""Instruction data, prompts and calibration text."""
