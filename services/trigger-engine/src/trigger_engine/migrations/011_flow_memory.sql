-- What flows remember about a person beyond the contact facts (issue 9): slot → entity id → JSON —
-- `carts` (R-T6: each cart's items, total, checkout URL, open/purchased/emptied), `price_drops` (R-T6.2: when a
-- price-drop message per SKU was sent), `shipments` (R-T3: the furthest status told per order), `orders` (R-T2.5:
-- amount, currency, returned). Written with the profile in the batch's transaction; a timer's `Remember`
-- decision writes one key of one slot in the timer pass's transaction.
ALTER TABLE contacts ADD COLUMN state jsonb NOT NULL DEFAULT '{}';

-- Who has which SKU in an open cart (R-T6.2): kept from the persons' `carts` memory in every batch that touches
-- them; a price drop schedules one timer per row of its SKU in one statement (decisions.FanOut).
CREATE TABLE cart_skus (
    tenant      text NOT NULL,
    sku         text NOT NULL,
    contact_key text NOT NULL,
    PRIMARY KEY (tenant, sku, contact_key)
);
CREATE INDEX cart_skus_by_contact ON cart_skus (tenant, contact_key);
