# This file is part of ts_ocps.
#
# Developed for the Vera C. Rubin Observatory Telescope and Site Systems.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""The data-arrival trigger: wait until files matching patterns exist."""

from __future__ import annotations

__all__ = [
    "WATCH_DEBOUNCE",
    "WATCH_STEP",
    "check_patterns",
    "match_patterns",
    "nearest_directory",
    "wait_for_paths",
]

import asyncio
import dataclasses
import glob
import logging
import os
import pathlib
import re
from collections.abc import Sequence

import watchfiles

from ..exceptions import ParameterError

_log = logging.getLogger("ocps.triggers")

_GLOB_MAGIC = re.compile(r"[*?[]")

WATCH_DEBOUNCE = 200
"""Longest time in milliseconds a burst of file events is gathered."""

WATCH_STEP = 50
"""Milliseconds between the watcher thread's checks of its stop flag; also
the delay before a burst of events is reported."""


@dataclasses.dataclass(frozen=True)
class _Pattern:
    """A pattern split where its first glob component starts.

    Parameters
    ----------
    text : `str`
        The absolute pattern.
    base : `pathlib.Path`
        The longest leading directory without glob characters.
    deep : `bool`
        True if matches may lie deeper than directly in ``base`` (a glob
        in a directory component), so ``base`` is watched recursively.
    """

    text: str
    base: pathlib.Path
    deep: bool


def check_patterns(patterns: Sequence[str]) -> None:
    """Refuse patterns `wait_for_paths` cannot accept.

    Parameters
    ----------
    patterns : `collections.abc.Sequence` [`str`]
        Absolute paths or glob patterns (``*``, ``?``, ``[...]`` and
        ``**`` for any depth).

    Raises
    ------
    ParameterError
        Raised if a pattern is not a string, is relative, has a ``..``
        component or a NUL character, or names no file (e.g. "/" or a
        path ending with "/").
    """
    _split_patterns(patterns)


def _split_patterns(patterns: Sequence[str]) -> list[_Pattern]:
    """Check patterns and split each into its static base and the rest."""
    if isinstance(patterns, str):
        raise ParameterError(
            f"wait_for must be a list of patterns, not the string {patterns!r}"
        )
    split = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ParameterError(f"wait_for pattern {pattern!r} is not a string")
        path = pathlib.PurePosixPath(pattern)
        if not path.is_absolute():
            raise ParameterError(f"wait_for pattern {pattern!r} is not absolute")
        if ".." in path.parts:
            raise ParameterError(f"wait_for pattern {pattern!r} has a '..' component")
        parts = path.parts[1:]
        if not parts or pattern.endswith("/"):
            raise ParameterError(f"wait_for pattern {pattern!r} names no file")
        if "\0" in pattern:
            raise ParameterError(f"wait_for pattern {pattern!r} has a NUL character")

        static = 0
        while static < len(parts) and not _GLOB_MAGIC.search(parts[static]):
            static += 1
        if static == len(parts):
            static -= 1
        rest = parts[static:]
        deep = len(rest) > 1 or "**" in rest
        base = pathlib.Path(path.anchor, *parts[:static])
        split.append(_Pattern(text=pattern, base=base, deep=deep))
    return split


def _matches(pattern: str) -> list[pathlib.Path]:
    """Existing files (not directories) that match one pattern."""
    return [
        pathlib.Path(match)
        for match in glob.glob(pattern, recursive=True)
        if os.path.isfile(match)
    ]


def match_patterns(patterns: Sequence[str]) -> list[pathlib.Path] | None:
    """Look once for files matching every pattern.

    Parameters
    ----------
    patterns : `collections.abc.Sequence` [`str`]
        Absolute paths or glob patterns, already checked.

    Returns
    -------
    matches : `list` [`pathlib.Path`] or `None`
        Every matching file, sorted and without duplicates, if each
        pattern matches at least one file; None otherwise.
    """
    found: set[pathlib.Path] = set()
    for pattern in patterns:
        matches = _matches(pattern)
        if not matches:
            return None
        found.update(matches)
    return sorted(found)


def nearest_directory(path: pathlib.Path) -> pathlib.Path:
    """Return the path if it is a directory, else its nearest ancestor
    that is one; a watcher placed there sees the rest of the path appear.
    """
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _watch_roots(
    patterns: Sequence[_Pattern],
) -> dict[bool, frozenset[pathlib.Path]]:
    """Directories to watch for the unmatched patterns, by recursiveness.

    A pattern whose base exists is watched there, recursively if matches
    may lie deeper. Otherwise the nearest existing ancestor is watched
    (not recursively) for the next missing directory to appear; the roots
    are then worked out again.
    """
    roots: dict[bool, set[pathlib.Path]] = {False: set(), True: set()}
    for pattern in patterns:
        if _matches(pattern.text):
            continue
        root = nearest_directory(pattern.base)
        recursive = pattern.deep and root == pattern.base
        roots[recursive].add(root)
    return {key: frozenset(value) for key, value in roots.items() if value}


class _Watchers:
    """File watchers on sets of directories that flag any change.

    Parameters
    ----------
    log : `logging.Logger`
        Logger for debug messages.
    prefix : `str`
        Start of every message, e.g. ``job_id=... ``.
    """

    def __init__(self, log: logging.Logger, prefix: str) -> None:
        self.log = log
        self.prefix = prefix
        self.roots: dict[bool, frozenset[pathlib.Path]] = {}
        self.changed = asyncio.Event()
        self.failure: Exception | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, roots: dict[bool, frozenset[pathlib.Path]]) -> None:
        """Watch new roots, after stopping any current watchers.

        Returns once the new watchers are armed, so a file that appears
        after this returns is reported by `changed`.
        """
        await self.stop()
        self.roots = roots
        self.failure = None
        self._stop = asyncio.Event()
        self.changed.clear()
        for recursive, paths in roots.items():
            self.log.debug(
                "%swatching %s%s",
                self.prefix,
                ", ".join(sorted(map(str, paths))),
                " recursively" if recursive else "",
            )
            self._tasks.append(asyncio.create_task(self._watch(paths, recursive)))

        # awatch creates its watcher (adding every inotify watch) in its
        # first step, before its first await; one pass of the event loop
        # lets each new task take that step. This relies on how awatch is
        # written (checked with watchfiles 1.3; test_file_created_while_
        # arming fails if that changes): remove it if awatch ever offers
        # a "ready" signal, and wait for that instead.
        await asyncio.sleep(0)

    async def _watch(self, paths: frozenset[pathlib.Path], recursive: bool) -> None:
        """Set `changed` on every batch of file events under the paths."""
        try:
            async for _ in watchfiles.awatch(
                *paths,
                watch_filter=None,
                debounce=WATCH_DEBOUNCE,
                step=WATCH_STEP,
                stop_event=self._stop,
                recursive=recursive,
            ):
                self.changed.set()
        except Exception as e:
            # Most likely a watched directory vanished while arming: let
            # the caller look again and choose new roots (or give up).
            self.log.debug(
                "%swatcher on %s ended: %r", self.prefix, sorted(map(str, paths)), e
            )
            self.failure = e
            self.changed.set()

    async def stop(self) -> None:
        """Stop every watcher and wait for its task to end."""
        if not self._tasks:
            return
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


async def wait_for_paths(
    patterns: Sequence[str],
    timeout: float,
    *,
    log: logging.Logger | None = None,
    job_id: str | None = None,
) -> list[pathlib.Path]:
    """Wait until every pattern matches at least one existing file.

    Files already there are found at once; otherwise file-system events
    on the nearest existing directories wake the search, so directories
    that do not exist yet may appear later. No polling.

    Parameters
    ----------
    patterns : `collections.abc.Sequence` [`str`]
        Absolute paths or glob patterns (``*``, ``?``, ``[...]``, and
        ``**`` for any depth). Only regular files match, not directories.
    timeout : `float`
        Longest wait in seconds; 0 (or less) waits forever.
    log : `logging.Logger` or `None`
        Logger for debug messages; a child of "ocps" by default.
    job_id : `str` or `None`
        Job the wait is for; its messages then start ``job_id=...``.

    Returns
    -------
    paths : `list` [`pathlib.Path`]
        Every matching file, sorted and without duplicates.

    Raises
    ------
    ParameterError
        Raised if a pattern is refused (see `check_patterns`).
    TimeoutError
        Raised if the files did not all appear within ``timeout``.
    OSError
        Raised if a directory cannot be watched (e.g. no permission).

    Notes
    -----
    A file counts as soon as it exists, not when its writer is done with
    it. Writers should make files appear atomically (write under another
    name, or in another directory of the same file system, then rename).
    A "complete" marker would lift this; none of the current data sources
    writes one.
    """
    log = log or _log
    split = _split_patterns(patterns)
    texts = [pattern.text for pattern in split]
    matches = match_patterns(texts)
    if matches is not None:
        return matches

    watchers = _Watchers(log, f"job_id={job_id} " if job_id else "")
    try:
        async with asyncio.timeout(timeout if timeout > 0 else None):
            while True:
                roots = _watch_roots(split)
                if watchers.failure is not None and roots == watchers.roots:
                    watched = sorted(
                        str(path) for paths in roots.values() for path in paths
                    )
                    raise OSError(
                        f"cannot watch {', '.join(watched)}: {watchers.failure}"
                    ) from watchers.failure
                if roots != watchers.roots:
                    await watchers.start(roots)
                    # Look again: a file may have appeared while arming.
                else:
                    await watchers.changed.wait()
                    watchers.changed.clear()
                matches = match_patterns(texts)
                if matches is not None:
                    return matches
    except TimeoutError:
        missing = [text for text in texts if not _matches(text)]
        raise TimeoutError(
            f"no file matched {', '.join(map(repr, missing))} within {timeout} s"
        ) from None
    finally:
        await watchers.stop()
