"""PyBullet scenes for the lab, registered with Gymnasium.

``scenes.register()`` (``scenes.make`` calls it) registers ``lab/Reach-v0``,
``lab/Wall-v0``, ``lab/Push-v0`` and ``lab/Kitchen-v0``; ``gymnasium.make``
wraps each in a ``TimeLimit`` of the scene's ``MAX_EPISODE_STEPS``. A new
scene is one file plus one line in ``SCENES``. Importing this package pulls
neither PyBullet nor Gymnasium (a GPU machine with torch alone imports the
world models and planners, which read ``scenes.errors`` and ``scene_key``):
a scene's module is imported when its class is asked for.
"""

from __future__ import annotations

from common.errors import LabError

# short name -> (gymnasium id, "module:Class")
SCENES = {
    "reach": ("lab/Reach-v0", "scenes.reach:ReachEnv"),
    "wall": ("lab/Wall-v0", "scenes.wall:WallEnv"),
    "push": ("lab/Push-v0", "scenes.push:PushEnv"),
    "kitchen": ("lab/Kitchen-v0", "scenes.kitchen:KitchenEnv"),
}


def scene_class(name: str):
    """The env class for a short name (``"reach"``) or id (``"lab/Reach-v0"``)."""
    key = scene_key(name)
    module, cls = SCENES[key][1].split(":")
    return getattr(__import__(module, fromlist=[cls]), cls)


def scene_key(name: str) -> str:
    """``"lab/Reach-v0"`` or ``"Reach"`` -> ``"reach"``; unknown names raise."""
    for key, (env_id, _) in SCENES.items():
        if name.lower() in (key, env_id.lower()):
            return key
    raise LabError(f"unknown scene {name!r}; choose one of {', '.join(SCENES)}")


def make(name: str, **kwargs):
    """``gymnasium.make`` for a short name or id, with the scene's TimeLimit."""
    import gymnasium as gym

    register()
    return gym.make(SCENES[scene_key(name)][0], **kwargs)


def register() -> None:
    """Register every scene's id with Gymnasium (once)."""
    import gymnasium as gym

    for key, (env_id, entry) in SCENES.items():
        if env_id in gym.registry:
            continue
        steps = scene_class(key).MAX_EPISODE_STEPS
        gym.register(id=env_id, entry_point=entry, max_episode_steps=steps)


__all__ = ["SCENES", "LabError", "make", "register", "scene_class", "scene_key"]
