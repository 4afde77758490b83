"""Public results boards: revocable links per flow, and the aggregated figures they show."""

from app.boards.figures import Board, board_figures
from app.boards.links import BoardLinkOut, LinkError, NewLink, create_link, flow_of, list_links, revoke_link

__all__ = [
    "Board",
    "BoardLinkOut",
    "LinkError",
    "NewLink",
    "board_figures",
    "create_link",
    "flow_of",
    "list_links",
    "revoke_link",
]
