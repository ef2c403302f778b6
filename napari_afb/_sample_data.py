"""Sample data for napari's File > Open Sample menu (npe2 ``sample_data`` contributions).

Returns layer-data tuples; this module imports no napari, so it stays cheap to load.
"""

from __future__ import annotations

from .guidance import ARROWS, COLORS, NAMES


def guidance_layer_kwargs(name: str) -> dict:
    """Layer keyword arguments that show a guidance map in the label convention's colours,
    with a features table so hovering shows each label's direction."""
    return {
        "name": name,
        "colormap": {**COLORS, None: (0.0, 0.0, 0.0, 0.0)},
        "opacity": 0.5,
        "features": {
            "index": list(range(len(NAMES))),
            "direction": [f"{a} {n}" for a, n in zip(ARROWS, NAMES)],
        },
    }


def blurry_clock():
    """A real photo of a wall clock, blurred by camera motion (scikit-image, public domain)."""
    from .samples import clock

    return [(clock(), {"name": "blurry clock"}, "image")]


def licence_plate():
    """A real photo of a car's licence plate, blurred by camera shake (see
    :func:`napari_afb.samples.licence_plate` for its source)."""
    from .samples import licence_plate as load

    return [(load(), {"name": "blurry licence plate"}, "image")]


def synthetic_blur():
    """A synthetic blur of CC0 stills moved along known paths, with its true frames and guidance."""
    from .samples import synthetic_blur as make

    s = make()
    return [
        (
            s.frames,
            {
                "name": "synthetic true frames",
                "axis_labels": ("t", "y", "x"),
                "visible": False,
                "metadata": {"description": s.description},
            },
            "image",
        ),
        (s.blurry, {"name": "synthetic blur", "metadata": {"description": s.description}}, "image"),
        (s.guidance, guidance_layer_kwargs("synthetic blur guidance"), "labels"),
    ]
