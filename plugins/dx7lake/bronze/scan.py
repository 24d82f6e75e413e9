"""The MIDI byte scanner: one pass over a Standard MIDI File, compiled with numba.

Why our own scanner: symusic (fast) does not expose the MIDI channel and its pairing
policy is not ours to fix; mido (exact) builds a Python object per message and is far
too slow for Lakh. This kernel reads the bytes once, at machine speed, with exactly the
bronze contract's rules:

- a track id is a (MIDI track, channel) pair, so a type-0 file yields one per channel;
- a note-off, or a note-on with velocity 0, closes the *oldest* open note of that
  channel and pitch (one FIFO queue per channel+pitch, reset at each track's end);
- notes still open when their track ends are dropped and counted;
- ``program`` is the channel's program (per track) when the note starts;
- times map through the file's tempo map (every set-tempo meta of every track; the
  MIDI default of 500,000 µs per beat before the first one).

Anything malformed stops the scan with an error code (see ``ERRORS``), never a crash:
every read is bounds-checked against its chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
NOT_MIDI = 1
SHORT_HEADER = 2
BAD_HEADER = 3
BAD_FORMAT = 4
SMPTE = 5
ZERO_DIVISION = 6
MISSING_TRACKS = 7
TRUNCATED_CHUNK = 8
TRUNCATED_EVENT = 9
LONG_VLQ = 10
NO_RUNNING_STATUS = 11
UNDEFINED_STATUS = 12
BAD_DATA_BYTE = 13
TOO_MANY_NOTES = 14

ERRORS = {
    NOT_MIDI: "not a MIDI file: missing MThd header",
    SHORT_HEADER: "truncated: file ends inside the MThd header",
    BAD_HEADER: "bad header: MThd chunk shorter than 6 bytes",
    BAD_FORMAT: "bad header: MIDI format is not 0, 1 or 2",
    SMPTE: "unsupported: SMPTE time division (no beats)",
    ZERO_DIVISION: "bad header: zero ticks per beat",
    MISSING_TRACKS: "truncated: fewer track chunks than the header declares",
    TRUNCATED_CHUNK: "truncated: a chunk runs past the end of the file",
    TRUNCATED_EVENT: "corrupt track: an event runs past the end of its track chunk",
    LONG_VLQ: "corrupt track: variable-length number longer than 4 bytes",
    NO_RUNNING_STATUS: "corrupt track: running status with no previous status byte",
    UNDEFINED_STATUS: "corrupt track: undefined status byte",
    BAD_DATA_BYTE: "corrupt track: data byte above 127",
    TOO_MANY_NOTES: "over the note cap",
}

# bytes following a system-common / real-time status inside a track (-1: undefined)
_SYSTEM_LENGTHS = np.array([-1, 1, 2, 1, -1, -1, 0, -1, 0, -1, 0, 0, 0, -1, 0, -1], dtype=np.int64)
_QUEUES = 16 * 128  # one FIFO of open notes per channel and pitch
_DEFAULT_TEMPO = 500_000  # µs per beat


@njit(cache=True, nogil=True)
def _vlq(data, pos, end):
    """A variable-length quantity at ``pos``: (value, next pos); value -1 truncated, -2 too long."""
    value = 0
    for _ in range(4):
        if pos >= end:
            return -1, pos
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    return -2, pos


@njit(cache=True, nogil=True)
def _be(data, pos, n):
    value = 0
    for i in range(n):
        value = (value << 8) | data[pos + i]
    return value


@njit(cache=True, nogil=True)
def scan(data, max_notes):
    """Scan one file. Returns (error, error_pos, ticks_per_beat, tracks, unclosed, notes...).

    ``notes`` are parallel arrays, ordered by track then note-on: track, channel,
    ordinal (per track+channel), pitch, velocity, program, start/duration in beats,
    start/duration in seconds. On error they are empty and ``error`` is non-zero.
    """
    size = data.shape[0]
    cap = min(max_notes + 1, size // 3 + 1)  # a note-on takes at least 3 bytes
    track = np.empty(cap, np.int32)
    channel = np.empty(cap, np.int16)
    pitch = np.empty(cap, np.int64)
    velocity = np.empty(cap, np.int64)
    program = np.empty(cap, np.int16)
    start = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    link = np.empty(cap, np.int64)
    head = np.full(_QUEUES, -1, np.int64)
    tail = np.full(_QUEUES, -1, np.int64)
    tempo_cap = size // 7 + 2  # a set-tempo event takes at least 7 bytes
    tempo_tick = np.empty(tempo_cap, np.int64)
    tempo_value = np.empty(tempo_cap, np.int64)
    tempo_tick[0] = 0
    tempo_value[0] = _DEFAULT_TEMPO
    tempos = 1
    n = 0
    unclosed = 0
    error = OK
    pos = 0
    division = 0
    tracks = 0

    if size < 4 or data[0] != 0x4D or data[1] != 0x54 or data[2] != 0x68 or data[3] != 0x64:
        error = NOT_MIDI
    elif size < 14:
        error = SHORT_HEADER
    else:
        header_len = _be(data, 4, 4)
        fmt = _be(data, 8, 2)
        declared = _be(data, 10, 2)
        division = _be(data, 12, 2)
        pos = 8 + header_len
        if header_len < 6:
            error = BAD_HEADER
        elif fmt > 2:
            error = BAD_FORMAT
        elif division & 0x8000:
            error = SMPTE
        elif division == 0:
            error = ZERO_DIVISION
        while error == OK and tracks < declared:
            if pos + 8 > size:
                error = MISSING_TRACKS
                break
            is_track = data[pos] == 0x4D and data[pos + 1] == 0x54 and data[pos + 2] == 0x72 and data[pos + 3] == 0x6B
            chunk_end = pos + 8 + _be(data, pos + 4, 4)
            pos += 8
            if chunk_end > size:
                error = TRUNCATED_CHUNK
                break
            if not is_track:  # an alien chunk: the standard says skip it
                pos = chunk_end
                continue
            tick = 0
            running = 0
            programs = np.zeros(16, np.int16)
            while pos < chunk_end:
                delta, pos = _vlq(data, pos, chunk_end)
                if delta < 0:
                    error = TRUNCATED_EVENT if delta == -1 else LONG_VLQ
                    break
                tick += delta
                if pos >= chunk_end:
                    error = TRUNCATED_EVENT
                    break
                status = data[pos]
                if status == 0xFF:  # meta: type, length, data; running status unchanged
                    if pos + 2 > chunk_end:
                        error = TRUNCATED_EVENT
                        break
                    meta = data[pos + 1]
                    length, pos = _vlq(data, pos + 2, chunk_end)
                    if length < 0 or pos + length > chunk_end:
                        error = TRUNCATED_EVENT if length != -2 else LONG_VLQ
                        break
                    if meta == 0x51 and length == 3:
                        tempo_tick[tempos] = tick
                        tempo_value[tempos] = _be(data, pos, 3)
                        tempos += 1
                    pos += length
                    continue
                if status == 0xF0 or status == 0xF7:  # sysex: length, data; cancels running status
                    length, pos = _vlq(data, pos + 1, chunk_end)
                    if length < 0 or pos + length > chunk_end:
                        error = TRUNCATED_EVENT if length != -2 else LONG_VLQ
                        break
                    pos += length
                    running = 0
                    continue
                if status >= 0xF0:  # system common / real time: not expected in files, but sized
                    length = _SYSTEM_LENGTHS[status & 0x0F]
                    if length < 0:
                        error = UNDEFINED_STATUS
                        break
                    if pos + 1 + length > chunk_end:
                        error = TRUNCATED_EVENT
                        break
                    pos += 1 + length
                    running = 0
                    continue
                if status >= 0x80:
                    running = status
                    pos += 1
                elif running == 0:
                    error = NO_RUNNING_STATUS
                    break
                kind = running & 0xF0
                ch = running & 0x0F
                width = 1 if kind == 0xC0 or kind == 0xD0 else 2
                if pos + width > chunk_end:
                    error = TRUNCATED_EVENT
                    break
                d1 = data[pos]
                d2 = data[pos + 1] if width == 2 else 0
                if d1 > 0x7F or d2 > 0x7F:
                    error = BAD_DATA_BYTE
                    break
                pos += width
                if kind == 0x90 and d2 > 0:
                    if n >= max_notes:
                        error = TOO_MANY_NOTES
                        break
                    q = ch * 128 + d1
                    track[n] = tracks
                    channel[n] = ch
                    pitch[n] = d1
                    velocity[n] = d2
                    program[n] = programs[ch]
                    start[n] = tick
                    end[n] = -1
                    link[n] = -1
                    if tail[q] == -1:
                        head[q] = n
                    else:
                        link[tail[q]] = n
                    tail[q] = n
                    n += 1
                elif kind == 0x80 or kind == 0x90:
                    q = ch * 128 + d1
                    oldest = head[q]
                    if oldest != -1:
                        end[oldest] = tick
                        head[q] = link[oldest]
                        if head[q] == -1:
                            tail[q] = -1
                elif kind == 0xC0:
                    programs[ch] = d1
            if error != OK:
                break
            for q in range(_QUEUES):  # notes never closed by the end of their track
                s = head[q]
                while s != -1:
                    unclosed += 1
                    s = link[s]
                head[q] = -1
                tail[q] = -1
            pos = chunk_end
            tracks += 1

    if error != OK:
        n = 0
    # keep closed notes only; number them per (track, channel) in note-on order
    ordinal = np.empty(n, np.int64)
    counts = np.zeros(16, np.int64)
    kept = 0
    last_track = -1
    for i in range(n):
        if end[i] < 0:
            continue
        if track[i] != last_track:
            counts[:] = 0
            last_track = track[i]
        ch = channel[i]
        track[kept] = track[i]
        channel[kept] = ch
        pitch[kept] = pitch[i]
        velocity[kept] = velocity[i]
        program[kept] = program[i]
        start[kept] = start[i]
        end[kept] = end[i]
        ordinal[kept] = counts[ch]
        counts[ch] += 1
        kept += 1

    # tempo map: stable sort by tick (a later track's tempo at the same tick wins)
    order = np.argsort(tempo_tick[:tempos], kind="mergesort")
    map_tick = tempo_tick[:tempos][order]
    map_tempo = tempo_value[:tempos][order].astype(np.float64)
    map_seconds = np.zeros(tempos, np.float64)
    scale = 1.0 / (1e6 * max(division, 1))
    for i in range(1, tempos):
        map_seconds[i] = map_seconds[i - 1] + (map_tick[i] - map_tick[i - 1]) * map_tempo[i - 1] * scale
    start_beats = np.empty(kept, np.float64)
    duration_beats = np.empty(kept, np.float64)
    start_seconds = np.empty(kept, np.float64)
    duration_seconds = np.empty(kept, np.float64)
    for i in range(kept):
        a = start[i]
        b = end[i]
        start_beats[i] = a / division
        duration_beats[i] = (b - a) / division
        ka = np.searchsorted(map_tick, a, side="right") - 1
        kb = np.searchsorted(map_tick, b, side="right") - 1
        sa = map_seconds[ka] + (a - map_tick[ka]) * map_tempo[ka] * scale
        sb = map_seconds[kb] + (b - map_tick[kb]) * map_tempo[kb] * scale
        start_seconds[i] = sa
        duration_seconds[i] = sb - sa
    return (
        error,
        pos,
        division,
        tracks,
        unclosed,
        track[:kept].copy(),
        channel[:kept].copy(),
        ordinal[:kept].copy(),
        pitch[:kept].copy(),
        velocity[:kept].copy(),
        program[:kept].copy(),
        start_beats,
        duration_beats,
        start_seconds,
        duration_seconds,
    )
