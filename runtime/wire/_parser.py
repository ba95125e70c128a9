"""A faster parser for what the NATS server sends, in place of nats-py's (the same calls out).

nats-py's ``Parser.parse`` tries up to seven regular expressions per protocol line and deletes
each consumed line and payload from the front of its buffer, so every message moves the rest of
the read (up to 32 KiB) in memory. Measured on the event-consume path, that parser was a quarter
of the client's CPU. This one finds line ends with ``bytes.find``, splits the line, dispatches on
the first word, and slices the read once per message: one copy per payload and no memmove.

It makes exactly the calls nats-py's parser makes on its client (``_process_msg``, ``_process_ping``,
``_process_pong``, ``_process_info``, ``_process_err``), for every way the bytes can be split
across reads: tests/unit/wire/test_parser.py checks that against nats-py's own parser.

Sizes in ``MSG``/``HMSG`` are checked as nats-py's regular expressions check them (plain ASCII
digits: no sign, no ``_``, which ``int()`` would take), plus two checks nats-py lacks: the header
size is at most the total size, and no size is over what any nats-server sends (its
``max_payload`` cannot be set above 64 MiB). A negative size would otherwise move the parse
position back into the control line (``MSG a 1 -5``), and a huge one would buffer without end.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any, Final

from nats.errors import ProtocolError
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser

_CRLF = b"\r\n"
MAX_MSG_SIZE: Final = 64 * 1024 * 1024
"""nats-server refuses a ``max_payload`` above 64 MiB (headers count in it): no larger frame is real."""


class FastParser(Parser):
    """nats-py's ``Parser`` with ``parse`` rewritten; state and ``reset`` stay compatible."""

    def __init__(self, nc: Any = None) -> None:
        self._epoch = 0
        super().__init__(nc)

    def reset(self) -> None:
        super().reset()
        self._epoch += 1  # a reset (reconnect) while parse awaits a callback ends that parse

    async def parse(self, data: bytes = b"") -> None:
        epoch = self._epoch
        if self.buf:
            self.buf.extend(data)
            if self.state == AWAITING_MSG_PAYLOAD and len(self.buf) < self.needed + 2:
                return  # a large payload arriving read by read: copy it once, when whole
            data = bytes(self.buf)
        n = len(data)
        pos = 0
        nc = self.nc
        # CorpsClient's direct routes, called without a coroutine; another client: _process_msg.
        take = getattr(nc, "take_direct", None)
        declined = getattr(nc, "process_declined", None)
        try:
            while pos < n:
                if self.state == AWAITING_MSG_PAYLOAD:
                    end = pos + self.needed
                    if n < end + 2:
                        break  # the payload is not all here yet
                    hn = self.header_needed
                    if hn:
                        hdr: bytes | None = data[pos : pos + hn]
                        payload = data[pos + hn : end]
                        self.header_needed = 0
                    else:
                        hdr = None
                        payload = data[pos:end]
                    pos = end + 2
                    self.state = AWAITING_CONTROL_LINE
                    arg = self.msg_arg
                    if take is None:
                        await nc._process_msg(arg["sid"], arg["subject"], arg["reply"], payload, hdr)
                    elif take(arg["sid"], arg["subject"], arg["reply"], payload, hdr):
                        continue  # taken without an await: no reset can have happened
                    else:
                        assert declined is not None  # (both or neither: CorpsClient)
                        await declined(arg["sid"], arg["subject"], arg["reply"], payload, hdr)
                    if self._epoch != epoch:
                        return
                    continue
                eol = data.find(_CRLF, pos)
                if eol < 0:
                    break  # a control line split across reads
                line = data[pos:eol]
                parts = line.split()
                op = parts[0] if parts else b""
                pos = eol + 2
                call: Coroutine[Any, Any, None] | None = None
                if op == b"MSG" and len(parts) in (4, 5):
                    self._msg_arg(parts, 0)
                elif op == b"HMSG" and len(parts) in (5, 6):
                    self._msg_arg(parts, 1)
                elif op == b"PING" and len(parts) == 1:
                    call = nc._process_ping()
                elif op == b"PONG" and len(parts) == 1:
                    call = nc._process_pong()
                elif op == b"-ERR":
                    call = nc._process_err(line[4:].strip().decode().lower())
                elif op == b"INFO" and len(parts) > 1:
                    call = nc._process_info(json.loads(line[4:].strip().decode()))
                elif op != b"+OK" or len(parts) != 1:
                    pos = eol - len(line)  # not consumed
                    raise ProtocolError("nats: unknown protocol")
                if call is not None:
                    await call
                    if self._epoch != epoch:
                        return
        finally:
            if self._epoch == epoch:
                self.buf = bytearray(data[pos:]) if pos < n else bytearray()

    def _msg_arg(self, parts: list[bytes], has_header: int) -> None:
        size = parts[-1]
        header_size = parts[-2] if has_header else b"0"
        # bytes.isdigit() is ASCII digits only, as nats-py's \d+ on bytes: int() alone would take
        # b"-5", b"+5" and b"1_0".
        if not (size.isdigit() and header_size.isdigit() and parts[2].isdigit()):
            raise ProtocolError("nats: malformed MSG")
        needed, header_needed = int(size), int(header_size)
        if header_needed > needed or needed > MAX_MSG_SIZE:
            raise ProtocolError("nats: malformed MSG")
        arg = self.msg_arg
        arg["subject"] = parts[1]
        arg["sid"] = int(parts[2])
        arg["reply"] = parts[3] if len(parts) == 5 + has_header else b""
        self.needed = needed
        self.header_needed = header_needed
        self.state = AWAITING_MSG_PAYLOAD
