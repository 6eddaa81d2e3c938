"""The ferry links as one identity sees them, and the audited resend: what `/v1/ops/ferry` (ops/ferry_api.py) and
the console's ferry page (ops/console/ferry.py) both call, so the two doors decide alike.

- `visible(identity, report)`: operators see every link; a sector administrator their own sector's link (the one
  its active ferry bundle names) — another sector's link is `UnknownLink` to them, as if it did not exist.
- `resend(...)`: the reason checked (blank: `ReasonRequired`), the link found for the identity, the kept batches
  `from..to` written again (`FerryChannels.resend`: a bad range is `BadRange` before anything is written), and the
  action's own audit record (`ops ferry resend`: reason, range and how many batches were written).
Nothing here holds personal data (sequence numbers, counts, channel names).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.ledger import Ledger
from gateway.domain.roles import Identity, Role
from gateway.sectors import ferry_channels as ferry
from gateway.sectors.ferry_channels import FerryChannels, LinkReport
from ops.dead_letters import REASON_REQUIRED, ReasonRequired

__all__ = ["Resent", "link_seen", "links_seen", "resend", "visible"]


@dataclass(frozen=True)
class Resent:
    channel: str  # the channel this side sends on: public_security.down
    seq_from: int
    seq_to: int
    resent: int  # batches written to the link again


def visible(identity: Identity, report: LinkReport) -> bool:
    """Operators see every link; a sector administrator their own sector's."""
    return identity.has(Role.OPERATOR) or report.sector == identity.sector


def links_seen(channels: FerryChannels, identity: Identity) -> list[LinkReport]:
    """Every link the identity may see, by name."""
    return [report for report in channels.links() if visible(identity, report)]


def link_seen(channels: FerryChannels, identity: Identity, link: str) -> LinkReport:
    """The link, if the identity may see it: another sector's is as unknown as one nobody configured."""
    report = ferry.link_named(channels, link)
    if not visible(identity, report):
        raise ferry.UnknownLink(link)
    return report


def resend(channels: FerryChannels, ledger: Ledger, identity: Identity, link: str, seq_from: int, seq_to: int,
           reason: str) -> Resent:
    """Write the kept batches `seq_from..seq_to` of the link's sending channel again, audited; nothing is written
    (nor audited) for a blank reason, a link the identity may not see, or a bad range."""
    reason = reason.strip()
    if not reason:
        raise ReasonRequired(REASON_REQUIRED)
    report = link_seen(channels, identity, link)
    resent = channels.resend(link, seq_from, seq_to)
    ledger.audit(f"identity:{identity.id}", "ops ferry resend", f"ferry:{report.sent.channel}",
                 {"name": identity.name, "reason": reason, "from": seq_from, "to": seq_to},
                 report.sector, outcome=f"{resent} batches written again")
    return Resent(report.sent.channel, seq_from, seq_to, resent)
