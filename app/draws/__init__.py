"""Winner draws anyone can repeat: the entries, their canonical list and hash, the seed's
commitment, the selection algorithm, the stored rounds and the record that verifies them."""

from app.draws.entries import DrawError, DrawRule, Entry, read_exclude_file
from app.draws.notify import Notified, NotifyRequest, notify
from app.draws.record import DrawRecord, RecordError, Verification, decode, encode, verify
from app.draws.rounds import DrawNotFound, RoundSummary, StoredPick, list_rounds, picks, stored_record
from app.draws.run import DrawAlreadyMade, DrawRequest, run_draw
from app.draws.selection import ALGORITHM, pick

__all__ = [
    "ALGORITHM",
    "DrawAlreadyMade",
    "DrawError",
    "DrawNotFound",
    "DrawRecord",
    "DrawRequest",
    "DrawRule",
    "Entry",
    "Notified",
    "NotifyRequest",
    "RecordError",
    "RoundSummary",
    "StoredPick",
    "Verification",
    "decode",
    "encode",
    "list_rounds",
    "notify",
    "pick",
    "picks",
    "read_exclude_file",
    "run_draw",
    "stored_record",
    "verify",
]
