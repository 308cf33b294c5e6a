"""A fake camera for Chromium and a private network for WebRTC, shared by the browser tests that
stream a webcam (tests/test_browser_webcam.py and the whole-flow test).

WebRTC leaves 127.0.0.1 out of its candidates and the machine's own interfaces are no place for
test traffic, so the Streamlit server and Chromium both run inside a network namespace the test
makes (a veth pair holds the namespace's own addresses), deleted at the end. That needs root and
Debian's `ip`; `namespace_prefix` says whether it can be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from conftest import CHROMIUM_ARGS

SIZE, FPS = (640, 480), 15


def fake_camera_args(y4m: Path | str) -> list[str]:
    """Chromium flags that play `y4m` as the camera and grant camera access without asking."""
    return [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]


def start_camera(page):
    """Press the Webcam page's START and wait for processed frames to play; (webrtc frame, video)."""
    webrtc = page.frame_locator("iframe[title*='streamlit_webrtc']")
    webrtc.get_by_role("button", name="START").click(timeout=60_000)
    video = webrtc.locator("video").first
    video.wait_for(timeout=30_000)
    video.evaluate("v => new Promise((ok, bad) => { const t0 = Date.now(); (function poll() {"
                   " if (v.videoWidth > 0 && v.currentTime > 0.5) ok();"
                   " else if (Date.now() - t0 > 45000) bad(new Error('no processed frame'));"
                   " else setTimeout(poll, 100); })(); })")
    return webrtc, video


def namespaces_possible() -> str | None:
    """None when this machine can make a network namespace, else why not."""
    if os.geteuid() != 0:
        return "making a network namespace needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "making a network namespace needs `ip` (Debian's iproute2)"
    return None


def write_y4m(clip: Path, dest: Path, frames: int = 90, span_s: tuple[float, float] = (1.0, 18.0)) -> Path:
    """A 640x480 15 fps .y4m for Chromium's fake camera: `frames` frames spread evenly over
    `span_s` of the clip (so the expression changes within a few seconds), letterboxed."""
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS)
    wanted = set(np.round(np.linspace(span_s[0], span_s[1], frames) * fps).astype(int).tolist())
    picked, i = [], 0
    while len(picked) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            picked.append(frame)
        i += 1
    cap.release()
    assert len(picked) >= frames // 2, f"could read only {len(picked)} frames of {clip.name}"
    w, h = SIZE
    with dest.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in picked:
            scale = min(w / frame.shape[1], h / frame.shape[0])
            fw, fh = round(frame.shape[1] * scale), round(frame.shape[0] * scale)
            canvas = np.zeros((h, w, 3), np.uint8)
            y0, x0 = (h - fh) // 2, (w - fw) // 2
            canvas[y0:y0 + fh, x0:x0 + fw] = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
            f.write(b"FRAME\n" + cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
    return dest


@contextmanager
def network_namespace(prefix: str) -> Iterator[list[str]]:
    """A namespace with loopback and a veth pair of its own (10.77.0.1 and .2); always deleted.
    Yields the command prefix that runs a program inside it."""
    name = f"{prefix}_{os.getpid()}_{int(time.time()) % 100000}"
    steps = [
        ["ip", "netns", "add", name],
        # No IPv6: its link-local addresses appear a moment after the links come up, and
        # Chromium, seeing the network change, aborts the page's loads (ERR_NETWORK_CHANGED).
        ["ip", "netns", "exec", name, "sh", "-c", "for c in all default; do f=/proc/sys/net/ipv6/conf/$c/"
         "disable_ipv6; if [ -w $f ]; then echo 1 > $f; fi; done"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
        ["ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        ["ip", "-n", name, "addr", "add", "10.77.0.1/24", "dev", "v0"],
        ["ip", "-n", name, "addr", "add", "10.77.0.2/24", "dev", "v1"],
        ["ip", "-n", name, "link", "set", "v0", "up"],
        ["ip", "-n", name, "link", "set", "v1", "up"],
    ]
    try:
        for cmd in steps:
            subprocess.run(cmd, check=True, capture_output=True, timeout=20)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def y4m_frames(path: Path, n: int) -> list[np.ndarray]:
    """The first `n` frames of a .y4m written by `write_y4m`, as BGR."""
    w, h = SIZE
    size = w * h * 3 // 2
    out = []
    with path.open("rb") as f:
        f.readline()
        for _ in range(n):
            if f.readline() != b"FRAME\n":
                break
            yuv = np.frombuffer(f.read(size), np.uint8).reshape(h * 3 // 2, w)
            out.append(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))
    return out
