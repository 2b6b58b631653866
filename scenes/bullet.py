"""A private PyBullet client: every call carries its own ``physicsClientId``.

PyBullet's module functions default to client 0, which fails intermittently
from threads (bullet3#2975) and lets two envs in one process share a world.
Each scene owns one ``Client`` (``p.DIRECT``) and disconnects it in
``close()``; an undisconnected DIRECT client leaks memory.
"""

from __future__ import annotations

import functools

import numpy as np
import pybullet as p
import pybullet_data


class Client:
    """``client.fn(...)`` calls ``pybullet.fn(..., physicsClientId=id)``.

    Only functions go through the client; constants (``p.GEOM_BOX``) are
    read from ``pybullet`` itself.
    """

    def __init__(self) -> None:
        self.id = p.connect(p.DIRECT)
        self._bound: list[str] = []
        self.setAdditionalSearchPath(pybullet_data.getDataPath())

    def __getattr__(self, name: str):
        # Called only when normal lookup fails: bind once and store the
        # partial on the instance, so later calls are a plain attribute read.
        if name.startswith("_"):
            raise AttributeError(name)
        bound = functools.partial(getattr(p, name), physicsClientId=self.id)
        setattr(self, name, bound)
        self._bound.append(name)
        return bound

    @property
    def connected(self) -> bool:
        return self.id >= 0 and p.isConnected(physicsClientId=self.id)

    def close(self) -> None:
        """Disconnect; safe to call twice."""
        if self.id >= 0:
            if p.isConnected(physicsClientId=self.id):
                p.disconnect(physicsClientId=self.id)
            self.id = -1
            for name in self._bound:  # drop partials bound to the old id
                delattr(self, name)
            self._bound.clear()


class Camera:
    """Explicit view and projection matrices for TinyRenderer.

    In ``p.DIRECT`` there is no OpenGL: images come from TinyRenderer, which
    needs explicit matrices (bullet3#1157). No shadows and no segmentation
    mask, for speed.
    """

    def __init__(self, eye, target, up, fov_deg: float, near: float, far: float) -> None:
        self.view = p.computeViewMatrix(eye, target, up)
        self.projection = p.computeProjectionMatrixFOV(fov_deg, 1.0, near, far)

    def project(self, point) -> tuple[float, float] | None:
        """Where a world point (m) appears in this camera's images: (u, v) as fractions of
        the width (from the left) and height (from the top); None when behind the camera.
        The matrices are OpenGL's, column-major."""
        view = np.asarray(self.view, np.float64).reshape(4, 4).T
        proj = np.asarray(self.projection, np.float64).reshape(4, 4).T
        clip = proj @ view @ np.array([*map(float, point), 1.0])  # (4,)
        if clip[3] <= 0:
            return None
        x, y = clip[0] / clip[3], clip[1] / clip[3]  # normalised device coordinates, -1..1
        return float((x + 1) / 2), float((1 - y) / 2)

    def render(self, client: Client, size: int) -> np.ndarray:
        """An RGB image ``(size, size, 3)`` uint8."""
        _, _, rgba, _, _ = client.getCameraImage(
            size,
            size,
            self.view,
            self.projection,
            shadow=0,
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK,
        )
        # rgba is (size*size*4,) or (size, size, 4) uint8 depending on the
        # build; reshape either to (H, W, 4) and drop alpha.
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()
