"""
Passwords out of rl-zoo3's files: the launcher (:mod:`sb3_pmac.zoo`) runs rl-zoo3 with the real values of its
arguments (``--storage postgresql://user:secret@host/db`` must connect) while every file rl-zoo3 writes (``args.yml``,
``config.yml``, ``command.txt``, the Optuna report ``report_*.pkl``) gets the URLs with their password removed.
"""

import argparse
import copy
import pickle
import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

# scheme://user:password@host...: the password ends at the first "@", as SQLAlchemy (Optuna's storages) parses it;
# in a value that starts with a URL (an argument, ``--storage=URL``) a password may hold spaces, which SQLAlchemy
# accepts, but not a space before "-" (the next option of a command line: a password-less URL with a port is not
# joined to a later argument's "@"); inside other text it ends at a space
_VALUE_URL_PASSWORD = re.compile(r"^(?P<head>(?:--?[\w\-]+=)?[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?:[^@\s]|\s(?!-))*@")
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s@]*@")
# ...?password=...&...: the libpq / SQLAlchemy query form
_QUERY_PASSWORD = re.compile(r"(?P<sep>[?&])password=[^&#\s]*(?P<next>&?)", re.IGNORECASE)


def _drop_query_password(match: re.Match[str]) -> str:
    return match["sep"] if match["next"] else ""


def mask_credentials(value: Any) -> Any:
    """
    ``value`` with the password of every URL in it removed: ``postgresql://user:secret@host/db`` becomes
    ``postgresql://user@host/db`` (and a ``password=...`` query parameter is dropped), in a string or, recursively, in
    the strings of a list, tuple, dict or ``argparse.Namespace``. What holds no password is returned as it is (the same
    object); a container with one is copied, the original is left unchanged. Without the password such a URL still
    connects where libpq finds the password in ``PGPASSWORD`` or ``~/.pgpass``.
    """
    if isinstance(value, str):
        text = _URL_PASSWORD.sub(r"\g<head>@", _VALUE_URL_PASSWORD.sub(r"\g<head>@", value, count=1))
        text = _QUERY_PASSWORD.sub(_drop_query_password, text)
        return value if text == value else text
    if isinstance(value, argparse.Namespace):
        masked_vars = mask_credentials(vars(value))
        return value if masked_vars is vars(value) else argparse.Namespace(**masked_vars)
    if isinstance(value, dict):
        items = {key: mask_credentials(item) for key, item in value.items()}
        if all(items[key] is item for key, item in value.items()):
            return value
        masked = copy.copy(value)  # keeps the mapping type (OrderedDict, ...) and so what yaml.dump writes
        masked.update(items)
        return masked
    if isinstance(value, list) or type(value) is tuple:
        masked_items = [mask_credentials(item) for item in value]
        if all(new is old for new, old in zip(masked_items, value, strict=True)):
            return value
        return masked_items if isinstance(value, list) else tuple(masked_items)
    return value


_NOT_STATE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


class _MaskingPickler(pickle.Pickler):
    """A pickler that writes objects whose state holds a URL with a password (Optuna's ``RDBStorage.url``) masked."""

    def __init__(self, file: BinaryIO, protocol: int | None = None, **kwargs: Any) -> None:
        super().__init__(file, protocol, **kwargs)
        self._protocol = pickle.DEFAULT_PROTOCOL if protocol is None else protocol

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _NOT_STATE):
            return NotImplemented
        try:
            reduced = obj.__reduce_ex__(self._protocol)
        except Exception:
            return NotImplemented  # the regular path reports it
        if not isinstance(reduced, tuple) or len(reduced) < 3 or not isinstance(reduced[2], dict):
            return NotImplemented
        state = mask_credentials(reduced[2])
        if state is reduced[2]:
            return NotImplemented
        return (*reduced[:2], state, *reduced[3:])


class _MaskingPickleModule:
    """Stands for :mod:`pickle` in ``rl_zoo3.exp_manager``, which writes the Optuna report with ``pkl.dump(study, f)``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)

    @staticmethod
    def dump(obj: Any, file: BinaryIO, protocol: int | None = None, **kwargs: Any) -> None:
        _MaskingPickler(file, protocol, **kwargs).dump(obj)


def mask_saved_credentials() -> None:
    """
    Make rl-zoo3 write passwords of URLs (``--storage postgresql://user:secret@host/db``, any other argument or
    hyperparameter) to none of its files: ``args.yml`` and ``config.yml`` are written from masked copies (the run keeps
    the real values), and the Optuna report ``report_*.pkl`` pickles the study with its storage URL masked.
    ``command.txt`` and the study's ``command`` attribute come from ``sys.orig_argv``, which :func:`sb3_pmac.zoo.main`
    masks while the command runs (:func:`masked_orig_argv`). Idempotent.
    """
    from rl_zoo3 import exp_manager

    manager = exp_manager.ExperimentManager
    if not getattr(manager._save_config, "_sb3_pmac_masked", False):
        save_config = manager._save_config

        def _save_config(self: Any, saved_hyperparams: dict[str, Any]) -> None:
            args = self.args
            self.args = mask_credentials(args)
            try:
                save_config(self, mask_credentials(saved_hyperparams))
            finally:
                self.args = args

        _save_config._sb3_pmac_masked = True  # type: ignore[attr-defined]
        manager._save_config = _save_config  # type: ignore[method-assign]
    exp_manager.pkl = _MaskingPickleModule()  # type: ignore[assignment]


@contextmanager
def masked_orig_argv() -> Iterator[None]:
    """``sys.orig_argv`` (what rl-zoo3 saves as the command) without passwords, while the command runs."""
    orig_argv = getattr(sys, "orig_argv", None)
    if orig_argv is not None:
        sys.orig_argv = mask_credentials(list(orig_argv))
    try:
        yield
    finally:
        if orig_argv is not None:
            sys.orig_argv = orig_argv
