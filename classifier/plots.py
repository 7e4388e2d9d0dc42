"""Pictures for the training record in MLflow, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

CELL = 34
MARGIN = 8


def confusion_matrix_image(classes: list[str], matrix: list[list[int]], title: str) -> Image.Image:
    """Rows: true class, columns: predicted class; each cell shaded by its share of the row."""
    font = ImageFont.load_default()
    label_width = max(int(font.getlength(name)) for name in classes) + 2 * MARGIN
    k = len(classes)
    width = label_width + k * CELL + MARGIN
    height = 3 * MARGIN + 14 + k * CELL + label_width
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), f"{title} (rows: true class, columns: predicted)", fill="black", font=font)
    top = 2 * MARGIN + 14
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        y = top + i * CELL
        draw.text((MARGIN, y + CELL // 2 - 5), classes[i], fill="black", font=font)
        for j, count in enumerate(row):
            x = label_width + j * CELL
            share = count / total
            if i == j:
                shade = (int(255 - 180 * share), int(255 - 60 * share), int(255 - 180 * share))
            else:
                shade = (255, int(255 - 200 * min(1.0, 4 * share)), int(255 - 200 * min(1.0, 4 * share)))
            draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=shade, outline=(220, 220, 220))
            if count:
                text = str(count)
                draw.text((x + (CELL - font.getlength(text)) / 2, y + CELL // 2 - 5), text, fill="black", font=font)
    # Column labels, written sideways under the grid.
    for j, name in enumerate(classes):
        label = Image.new("RGB", (label_width, CELL), "white")
        ImageDraw.Draw(label).text((MARGIN, CELL // 2 - 5), name, fill="black", font=font)
        image.paste(label.rotate(90, expand=True), (label_width + j * CELL, top + k * CELL + MARGIN))
    return image
