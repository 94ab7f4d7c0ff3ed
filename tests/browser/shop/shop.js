// The demo shop's own tracking calls: what a site team writes next to the webhouse snippet.
// Every call's promise is kept in window.shopPending, so a test can wait until all were delivered.
(function () {
  var analytics = window.analytics;
  var product = {product_id: "p-1", sku: "MUG-BLUE", name: "Blue Mug", category: "kitchen", price: 12.5, currency: "EUR"};
  window.shopPending = [];
  function keep(promise) { window.shopPending.push(promise); return promise; }
  function go(promise, url) { keep(promise).then(function () { window.location.href = url; }); }
  function on(id, handler) {
    var el = document.getElementById(id);
    if (el) el.addEventListener("click", function (e) { e.preventDefault(); handler(); });
  }
  var page = document.body.getAttribute("data-page");
  keep(analytics.page());
  if (page === "product") keep(analytics.track("Product Viewed", product));
  on("accept", function () { keep(window.webhouseConsent.grant(["analytics", "personalisation"])); });
  on("withdraw", function () { keep(window.webhouseConsent.withdraw(["analytics", "personalisation"])); });
  on("add", function () {
    go(analytics.track("Product Added", Object.assign({cart_id: "cart-1", quantity: 2}, product)), "signin.html");
  });
  on("signin", function () {
    var email = document.getElementById("email").value;
    go(analytics.identify("cust-77", {email: email, first_name: "Ann"}).then(function () {
      return analytics.track("Signed In", {method: "password"});
    }), "checkout.html");
  });
  on("buy", function () {
    keep(analytics.track("Order Completed", {
      order_id: "o-1001", total: 30.0, revenue: 25.0, tax: 5.0, currency: "EUR", coupon: "WELCOME",
      products: [Object.assign({quantity: 2}, product)]
    }));
  });
  on("list", function () {
    keep(analytics.track("Product List Viewed", {list_id: "kitchen", category: "kitchen"}));
  });
})();
