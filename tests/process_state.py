"""What a Python process keeps for good, that importing or calling digits_zoo must leave as it was
(tests/test_side_effects.py). Only the standard library and OmegaConf: a fresh process imports it first."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from omegaconf import OmegaConf

UNTOUCHED_LOGGER = ([], logging.NOTSET, [], True, False)  # a getLogger(name) that nothing has configured


def state() -> dict:
    loggers = {
        name: (logger.handlers[:], logger.level, logger.filters[:], logger.propagate, logger.disabled)
        for name, logger in [("root", logging.getLogger()), *logging.root.manager.loggerDict.items()]
        if isinstance(logger, logging.Logger)
    }
    return {
        "warning filters": warnings.filters[:],
        "environment": dict(os.environ),
        "if_resume resolver": OmegaConf.has_resolver("if_resume"),
        "raiseExceptions": logging.raiseExceptions,
        "loggers": {name: kept for name, kept in loggers.items() if kept != UNTOUCHED_LOGGER},
        "streams": (sys.stdout, sys.stderr),
    }


def changes(before: dict, after: dict) -> dict:
    """What differs: of a dict, its entries that differ; of a list, what left it and what joined it."""
    found = {}
    for key, was in before.items():
        now = after[key]
        if isinstance(was, dict):
            now = {
                name: (was.get(name), now.get(name))
                for name in was.keys() | now.keys()
                if was.get(name) != now.get(name)
            }
        elif isinstance(was, list):
            now = {"gone": [item for item in was if item not in now], "new": [item for item in now if item not in was]}
        if now != was and now not in ({}, {"gone": [], "new": []}):
            found[key] = now if isinstance(was, (dict, list)) else (was, now)
    return found
