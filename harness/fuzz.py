"""placeholder"""
MODES = ("lockstep", "concurrent", "mixed")


def normalize(data: bytes, mode: str = "lockstep", threads: int = 0) -> tuple[bytes, str]:
    """The program a fuzz input stands for, and its mode (shared by target and triage).

    ``threads`` > 0 folds byte 0 so the program has at most that many threads; in
    ``mixed`` mode bit 7 of byte 0 selects concurrent (set) or lockstep."""
    run_mode = mode
    if mode == "mixed":
        run_mode = "concurrent" if data[:1] and data[0] & 0x80 else "lockstep"
    if threads and data:
        data = bytes([data[0] % threads]) + data[1:]
    return data, run_mode
