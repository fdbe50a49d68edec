#!/usr/bin/python3
"""Writes imagenet_classes.txt: the 1000 ImageNet-1k class names, one per line in class-index order, from
torchvision's _IMAGENET_CATEGORIES (Debian's python3-torchvision). Run: /usr/bin/python3 make_imagenet_classes.py"""
import os

from torchvision.models._meta import _IMAGENET_CATEGORIES

assert len(_IMAGENET_CATEGORIES) == 1000
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt"), "w", encoding="utf-8") as f:
    for name in _IMAGENET_CATEGORIES:
        assert "\n" not in name
        f.write(name + "\n")
