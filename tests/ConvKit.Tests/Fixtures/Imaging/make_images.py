# Writes the small images the imaging tests decode (formats StbImageWriteSharp cannot write): run with /usr/bin/python3.
import numpy as np
from PIL import Image

y, x = np.mgrid[0:48, 0:64]
rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
Image.fromarray(rgb).quantize(colors=64).save("gradient.gif")
Image.fromarray(rgb).save("gradient.webp", lossless=True)
