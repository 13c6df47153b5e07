"""What every kind of fleet provides: hosts that come up, answer, and go away."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from whoiscrawl.errors import WhoiscrawlError


class FleetError(WhoiscrawlError):
    """The fleet could not be brought up or released; the message says what to do."""


class FleetProvider(ABC):
    """One kind of fleet, behind the three calls the DAG's setup and teardown tasks make.

    The state ``provision`` returns is all the other two calls get: JSON-able
    (it travels as an XCom) and enough to find the resources again. A provider
    that launches cloud instances records their ids and the tag it put on them,
    and its teardown finds them by that tag, so nothing leaks when a task dies
    between the launch and its return. Every call is idempotent, since Airflow
    retries tasks: ``provision`` reuses what an earlier try launched, and
    releasing what is already gone is no error.
    """

    #: The name the DAG's ``fleet`` param selects this provider by.
    kind: ClassVar[str]

    @abstractmethod
    def provision(self, params: dict[str, Any]) -> dict[str, Any]:
        """Launch (or find) the hosts without waiting for them; the state, with ``kind``."""

    def prepare_image(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params that ``provision`` adds to its own, e.g. a machine image baked for the hosts; none by default.

        The DAG's first setup task, so an expensive bake is not repeated when provisioning is retried.
        """
        return {}

    @abstractmethod
    def workers_ready(self, state: dict[str, Any]) -> dict[str, Any]:
        """``{"hosts": [...]}`` once workers answer; a bounded wait, then :class:`FleetError`."""

    @abstractmethod
    def teardown(self, state: dict[str, Any]) -> dict[str, Any]:
        """Release what ``provision`` launched: ``{"released": [...]}``."""
