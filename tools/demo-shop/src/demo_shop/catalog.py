"""Static shop data: countries (phones, locale, tax, currency, carriers), names, products and chat lines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Country:
    """What the shop knows about customers from one region."""

    code: str
    weight: float
    locale: str
    timezone: str
    currency: str
    vat: float  # included in prices (EU, GB, CH); 0 where sales tax is added on top
    sales_tax: float  # added on top (US)
    shipping: float
    free_shipping_from: float
    phone_prefixes: tuple[tuple[str, int], ...]  # (prefix, digits that follow) of mobile ranges
    carriers: tuple[str, ...]
    names: str  # which name pool: "de", "en", "fr", "nl"


COUNTRIES: tuple[Country, ...] = (
    Country("DE", 0.45, "de-DE", "Europe/Berlin", "EUR", 0.19, 0.0, 4.90, 50.0,
            (("+49151", 8), ("+49152", 8), ("+49157", 8), ("+49160", 7), ("+49162", 8), ("+49170", 7),
             ("+49171", 7), ("+49172", 7), ("+49175", 7), ("+49176", 8), ("+49177", 8), ("+49179", 8)),
            ("DHL", "DPD", "Hermes", "GLS"), "de"),
    Country("AT", 0.12, "de-AT", "Europe/Vienna", "EUR", 0.20, 0.0, 5.90, 60.0,
            (("+43664", 7), ("+43676", 7), ("+43699", 8)), ("Post.at", "DPD", "GLS"), "de"),
    Country("CH", 0.05, "de-CH", "Europe/Zurich", "CHF", 0.081, 0.0, 7.90, 80.0,
            (("+4179", 7), ("+4178", 7), ("+4176", 7)), ("Post CH", "DHL"), "de"),
    Country("FR", 0.08, "fr-FR", "Europe/Paris", "EUR", 0.20, 0.0, 5.90, 60.0,
            (("+336", 8), ("+337", 8)), ("Colissimo", "Chronopost", "DPD"), "fr"),
    Country("NL", 0.05, "nl-NL", "Europe/Amsterdam", "EUR", 0.21, 0.0, 4.95, 50.0,
            (("+316", 8),), ("PostNL", "DHL"), "nl"),
    Country("GB", 0.12, "en-GB", "Europe/London", "GBP", 0.20, 0.0, 3.99, 40.0,
            (("+4479", 8), ("+4477", 8), ("+4475", 8)), ("Royal Mail", "Evri", "DPD"), "en"),
    Country("US", 0.13, "en-US", "America/New_York", "USD", 0.0, 0.0725, 5.99, 75.0,
            (("+1212", 7), ("+1415", 7), ("+1646", 7), ("+1917", 7), ("+1312", 7), ("+1617", 7)),
            ("UPS", "USPS", "FedEx"), "en"),
)

FIRST_NAMES = {
    "de": ("Anna", "Lena", "Leonie", "Marie", "Sophie", "Hannah", "Lea", "Emma", "Mia", "Laura", "Julia",
           "Katharina", "Sabine", "Ursula", "Jürgen", "Lukas", "Leon", "Jonas", "Finn", "Paul", "Felix",
           "Maximilian", "Tobias", "Stefan", "Thomas", "Michael", "Andreas", "Matthias", "Jörg", "Björn"),
    "en": ("Olivia", "Amelia", "Isla", "Ava", "Emily", "Grace", "Charlotte", "Jessica", "Sarah", "Emma",
           "Oliver", "George", "Harry", "Jack", "Noah", "James", "William", "Thomas", "Daniel", "Michael",
           "Liam", "Ethan", "Mason", "Sophia", "Madison"),
    "fr": ("Camille", "Léa", "Manon", "Chloé", "Inès", "Louis", "Gabriel", "Hugo", "Lucas", "Théo"),
    "nl": ("Sanne", "Femke", "Lotte", "Daan", "Sem", "Bram", "Jesse", "Noor", "Thijs", "Fleur"),
}
LAST_NAMES = {
    "de": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
           "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
           "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Gruber", "Huber"),
    "en": ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
           "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Miller",
           "Davis", "Garcia", "Martinez", "Anderson", "Clark", "O'Brien"),
    "fr": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau"),
    "nl": ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser", "Smit", "Meijer"),
}


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price: float


PRODUCTS: tuple[Product, ...] = (
    Product("SNK-RUN-42", "Running Sneaker Aero", "shoes", 119.90),
    Product("SNK-CLS-01", "Classic Leather Sneaker", "shoes", 89.90),
    Product("BOOT-CH-07", "Chelsea Boots", "shoes", 149.00),
    Product("TEE-ORG-WH", "Organic Cotton T-Shirt", "apparel", 24.90),
    Product("TEE-ORG-BK", "Organic Cotton T-Shirt Black", "apparel", 24.90),
    Product("HOOD-ZIP-GR", "Zip Hoodie Grey", "apparel", 59.90),
    Product("JKT-WIN-NV", "Winter Parka Navy", "apparel", 329.00),
    Product("JNS-SLM-32", "Slim Jeans", "apparel", 79.90),
    Product("SCK-3PK", "Merino Socks 3-Pack", "accessories", 19.90),
    Product("CAP-BSB-01", "Baseball Cap", "accessories", 22.00),
    Product("BAG-TOTE-CN", "Canvas Tote Bag", "accessories", 29.90),
    Product("BPK-CITY-20", "City Backpack 20 l", "bags", 89.00),
    Product("WLT-LTH-BR", "Leather Wallet", "accessories", 45.00),
    Product("BTL-STEEL-75", "Steel Bottle 0.75 l", "outdoor", 27.50),
    Product("MAT-YOGA-PR", "Yoga Mat Pro", "sports", 64.90),
    Product("DMB-ADJ-20", "Adjustable Dumbbells 20 kg", "sports", 189.00),
    Product("WTC-SMT-S2", "Smartwatch S2", "electronics", 249.00),
    Product("EAR-BT-PRO", "Wireless Earbuds Pro", "electronics", 159.00),
    Product("CHG-USB-C65", "USB-C Charger 65 W", "electronics", 39.90),
    Product("MUG-CER-03", "Ceramic Mug", "home", 14.90),
    Product("CND-SOY-LV", "Soy Candle Lavender", "home", 18.50),
    Product("BLK-WOOL-GR", "Wool Blanket", "home", 99.00),
    Product("CFE-BEAN-1K", "Espresso Beans 1 kg", "food", 21.90),
    Product("TEA-GRN-100", "Green Tea 100 g", "food", 9.90),
    Product("SUN-SPF50", "Sunscreen SPF 50", "beauty", 16.90),
    Product("SER-VITC-30", "Vitamin C Serum", "beauty", 34.90),
    Product("HDR-ION-01", "Ionic Hair Dryer", "beauty", 89.00),
    Product("PRF-EDP-50", "Eau de Parfum Amber 50 ml", "beauty", 72.00),
    Product("BBY-STR-UR", "Urban Baby Stroller", "baby", 449.00),
    Product("BBY-MON-VD", "Video Baby Monitor", "baby", 129.00),
    Product("BBY-BOD-3P", "Organic Baby Bodysuit 3-Pack", "baby", 29.90),
    Product("BBY-TOY-WD", "Wooden Stacking Toy", "baby", 19.90),
    Product("LAP-ULT-14", "Ultrabook 14\"", "electronics", 1099.00),
    Product("HDP-NC-700", "Noise-Cancelling Headphones", "electronics", 299.00),
)

# The categories the final cart reminder has its own copy for (R-T6.6); every other category is "other".
CART_CATEGORIES = ("baby", "electronics", "apparel", "beauty")
# Products that make an order big: above the anti-fraud threshold (R-T2.5, 300) or a cart above the
# specialist threshold (R-T6.4, 200).
PREMIUM_FROM = 150.0

INBOUND_TEXTS = {
    "de": ("Hallo, wo ist meine Bestellung?", "Wann kommt mein Paket an?", "Gibt es den Sneaker auch in 43?",
           "Danke, alles angekommen 👍", "Kann ich meine Adresse noch ändern?", "Wie funktioniert die Rücksendung?",
           "Der Rabattcode funktioniert nicht", "Habt ihr am Wochenende geöffnet?", "STOP"),
    "en": ("Hi, where is my order?", "When will my parcel arrive?", "Do you have this in size 10?",
           "Thanks, got it 👍", "Can I still change my address?", "How do returns work?",
           "The discount code doesn't work", "Is the hoodie back in stock?", "STOP"),
    "fr": ("Bonjour, où est ma commande ?", "Merci beaucoup !", "Comment faire un retour ?"),
    "nl": ("Hoi, waar is mijn bestelling?", "Bedankt!", "Hoe werkt retourneren?"),
}

FEEDBACK_TEXTS = {
    5: ("Super schnelle Lieferung!", "Great quality, will order again", "Alles perfekt", "Love it!"),
    4: ("Gute Qualität, Lieferung etwas langsam", "Nice product, packaging could be better"),
    3: ("Ganz okay", "It's fine, a bit small"),
    2: ("Farbe anders als auf dem Foto", "Arrived late"),
    1: ("Paket beschädigt angekommen", "Wrong size delivered, very disappointed"),
}
RATING_WEIGHTS = (0.06, 0.07, 0.12, 0.30, 0.45)  # ratings 1..5

TAGS = ("newsletter", "vip", "sneakers", "sale-hunter", "b2b", "gift-buyer")
