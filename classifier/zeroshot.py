"""The demo model used when no labelled photos are at hand: ImageNet classes summed per category.

Each category collects the ImageNet classes that the pretrained EfficientNet-Lite0 most
often assigns to that category's photos. The table was measured once on the training
half of the development photo set (the 60 ImageNet classes carrying the most probability
mass, each given to the category where it carried most); on the validation half it
scores about 67% top-1. That is a demonstration, not a product: train a real model
(README: Training a model) as soon as labelled photos exist.
"""

IMAGENET_MAPPING: dict[str, list[int]] = {
    "backpacks": [615, 465, 414, 797],  # knee pad, bulletproof vest, backpack, sleeping bag
    "belts": [
        891,
        551,
        473,
        567,
        464,
        507,
        678,
        584,
        541,
    ],  # waffle iron, face powder, can opener, frying pan, buckle, ...
    "casual_shoes": [502, 630, 514],  # clog, Loafer, cowboy boot
    "flip_flops": [606, 902, 714, 684, 674],  # iron, whistle, pick, ocarina, mousetrap
    "handbags": [636, 790, 747, 451, 748],  # mailbag, shopping basket, punching bag, bolo tie, purse
    "heels": [726, 680],  # plane, nipple
    "jeans": [608, 834, 461, 439],  # jean, suit, breastplate, bearskin
    "sandals": [774, 676],  # sandal, muzzle
    "shirts": [841, 869, 906, 697, 490],  # sweatshirt, trench coat, Windsor tie, pajama, chain mail
    "sports_shoes": [770],  # running shoe
    "sunglasses": [836, 633, 813, 837],  # sunglass, loupe, spatula, sunglasses
    "tops": [689, 885, 639, 601, 399],  # overskirt, velvet, maillot, hoopskirt, abaya
    "tshirts": [610],  # jersey, T-shirt
    "wallets": [446, 419, 632, 893],  # binder, Band Aid, loudspeaker, wallet
    "watches": [635, 531, 409, 826, 426, 892],  # magnetic compass, digital watch, analog clock, stopwatch, ...
}
