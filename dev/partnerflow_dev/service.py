"""What every local stand-in service shares: ``start()`` and ``stop()``, or a ``with`` block around both."""

from __future__ import annotations

from typing import Self


class Service:
    """A service that runs in the background between ``start()`` and ``stop()``; ``with`` does both."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
