package io.modelgate.runtime.error;

/**
 * Why a request was refused {@code RESOURCE_EXHAUSTED} before it ran, for operators telling a
 * tenant over its limits from a server short of room: each needs a different remedy.
 */
public enum Refusal {
  /** Over its tenant's quota: requests or rows a second, or requests in flight. */
  QUOTA("quota"),
  /** Its tenant holds its fair share of the version's queue while other tenants wait too. */
  FAIR_SHARE("fair_share"),
  /** The version's queue ({@code queue_capacity}) is full. */
  QUEUE_FULL("queue_full"),
  /** The server's request memory ({@code --request-memory}) has no room for it. */
  REQUEST_MEMORY("request_memory");

  private final String label;

  Refusal(String label) {
    this.label = label;
  }

  /** The reason as a metric label value. */
  public String label() {
    return label;
  }
}
