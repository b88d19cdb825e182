// Labels in Vietnamese (first) and English, and numbers as each language's readers write them.

const LABELS = {
  vi: {
    "nav.rankings": "Xếp hạng",
    "nav.agency": "Đơn vị",
    "nav.report": "Báo cáo",
    "nav.sql": "SQL",
    "auth.title": "Đăng nhập",
    "auth.prompt": "Máy chủ này yêu cầu mã truy cập (token có quyền query). Mã chỉ được giữ trong phiên trình duyệt này.",
    "auth.token": "Mã truy cập",
    "auth.submit": "Đăng nhập",
    "auth.refused": "Mã không hợp lệ hoặc đã bị thu hồi.",
    "auth.signout": "Đăng xuất",
    "common.loading": "Đang tải…",
    "common.month": "Tháng",
    "common.year": "Năm",
    "common.scope": "Phạm vi",
    "common.metric": "Chỉ số",
    "common.error": "Lỗi",
    "common.none": "Không có dữ liệu.",
    "common.download": "Tải về",
    "common.target": "mục tiêu",
    "metric.scorecard": "Điểm đánh giá (Bộ chỉ số 766)",
    "metric.on_time_rate": "Tỷ lệ đúng hạn",
    "metric.online_share": "Tỷ lệ hồ sơ trực tuyến",
    "metric_short.scorecard": "Điểm",
    "metric_short.on_time_rate": "Đúng hạn",
    "metric_short.online_share": "Trực tuyến",
    "kind.province": "Tỉnh, thành phố",
    "kind.department": "Sở, ban, ngành",
    "kind.center": "Trung tâm Phục vụ hành chính công",
    "kind.district": "Huyện, thị xã, thành phố",
    "kind.commune": "Xã, phường, thị trấn",
    "scope.national": "Toàn quốc — các tỉnh, thành phố",
    "rank.title": "Bảng xếp hạng",
    "rank.rank": "Hạng",
    "rank.move": "Thay đổi",
    "rank.agency": "Đơn vị",
    "rank.code": "Mã",
    "rank.value": "Giá trị",
    "rank.band": "Xếp loại",
    "rank.new": "mới",
    "rank.of": "trên",
    "rank.previous": "so với tháng trước",
    "rank.count": "{n} đơn vị",
    "band.excellent": "Xuất sắc",
    "band.good": "Tốt",
    "band.fair": "Khá",
    "band.average": "Trung bình",
    "band.weak": "Yếu",
    "agency.pick": "Chọn đơn vị",
    "agency.search": "Tìm theo tên hoặc mã",
    "agency.counts": "Hồ sơ tiếp nhận và giải quyết theo tháng",
    "agency.received": "Tiếp nhận",
    "agency.resolved": "Đã giải quyết",
    "agency.rates": "Tỷ lệ đúng hạn và tỷ lệ trực tuyến theo tháng",
    "agency.on_time": "Đúng hạn",
    "agency.online": "Trực tuyến",
    "agency.online_target": "Mục tiêu trực tuyến 20%",
    "agency.rank": "Thứ hạng điểm đánh giá theo tháng",
    "agency.rank_axis": "hạng (1 là cao nhất)",
    "agency.services": "Dịch vụ công theo mức độ",
    "agency.level": "Mức {n}",
    "agency.level34": "Tỷ lệ mức 3–4",
    "agency.level34_target": "Mục tiêu mức 3–4: 30%",
    "agency.ict": "Chỉ số ICT Index 2010–2019: thứ hạng so với các tỉnh dẫn đầu",
    "agency.ict_rank": "hạng trên 63",
    "agency.synthetic": "số liệu giả lập (nét đứt)",
    "agency.parent": "Trực thuộc",
    "agency.ceased": "Chấm dứt hoạt động từ {date}",
    "agency.merged_into": "— sáp nhập vào",
    "agency.includes": "Số liệu gồm cả các đơn vị đã sáp nhập vào",
    "agency.kind": "Loại",
    "agency.no_services": "Đơn vị này không quản lý dịch vụ công nào.",
    "report.title": "Biểu 06: tình hình giải quyết hồ sơ",
    "report.from": "Từ ngày",
    "report.to": "Đến ngày",
    "report.province": "Tỉnh",
    "report.show": "Xem",
    "report.stt": "Đơn vị",
    "report.received": "Số hồ sơ tiếp nhận",
    "report.resolved": "Số hồ sơ đã giải quyết",
    "report.withdrawn": "Rút hồ sơ",
    "report.open": "Số hồ sơ đang giải quyết",
    "report.carried_over": "Kỳ trước chuyển qua",
    "report.received_online": "Trực tuyến",
    "report.received_direct_postal": "Trực tiếp, bưu chính",
    "report.received_total": "Tổng",
    "report.resolved_early": "Trước hạn",
    "report.resolved_on_time": "Đúng hạn",
    "report.resolved_late": "Quá hạn",
    "report.resolved_total": "Tổng",
    "report.withdrawn_count": "Số lượng",
    "report.open_within_deadline": "Trong hạn",
    "report.open_overdue": "Quá hạn",
    "report.open_total": "Tổng",
    "report.subtotal": "Cộng",
    "report.total": "Tổng cộng",
    "sql.run": "Chạy (Ctrl+Enter)",
    "sql.tables": "Bảng và cột",
    "sql.rows": "{n} dòng",
    "sql.capped": "Hiển thị {n} dòng đầu; câu trả lời còn nhiều hơn — tải về để có toàn bộ.",
    "sql.query_id": "Mã truy vấn",
    "sql.time": "Thời gian",
    "sql.page": "Trang {p} / {n}",
    "sql.prev": "‹ Trước",
    "sql.next": "Sau ›",
  },
  en: {
    "nav.rankings": "Rankings",
    "nav.agency": "Agencies",
    "nav.report": "Report",
    "nav.sql": "SQL",
    "auth.title": "Sign in",
    "auth.prompt": "This server needs a token (one with the query scope). It is kept for this browser session only.",
    "auth.token": "Token",
    "auth.submit": "Sign in",
    "auth.refused": "That token is not valid or was revoked.",
    "auth.signout": "Sign out",
    "common.loading": "Loading…",
    "common.month": "Month",
    "common.year": "Year",
    "common.scope": "Scope",
    "common.metric": "Metric",
    "common.error": "Error",
    "common.none": "No data.",
    "common.download": "Download",
    "common.target": "target",
    "metric.scorecard": "Scorecard (Decision 766)",
    "metric.on_time_rate": "On-time rate",
    "metric.online_share": "Online share",
    "metric_short.scorecard": "Score",
    "metric_short.on_time_rate": "On time",
    "metric_short.online_share": "Online",
    "kind.province": "Provinces",
    "kind.department": "Departments",
    "kind.center": "Public Administration Service Center",
    "kind.district": "Districts",
    "kind.commune": "Communes",
    "scope.national": "National — the provinces",
    "rank.title": "League table",
    "rank.rank": "Rank",
    "rank.move": "Move",
    "rank.agency": "Agency",
    "rank.code": "Code",
    "rank.value": "Value",
    "rank.band": "Band",
    "rank.new": "new",
    "rank.of": "of",
    "rank.previous": "against the previous month",
    "rank.count": "{n} agencies",
    "band.excellent": "Excellent",
    "band.good": "Good",
    "band.fair": "Fair",
    "band.average": "Average",
    "band.weak": "Weak",
    "agency.pick": "Choose an agency",
    "agency.search": "Search by name or code",
    "agency.counts": "Dossiers received and resolved by month",
    "agency.received": "Received",
    "agency.resolved": "Resolved",
    "agency.rates": "On-time rate and online share by month",
    "agency.on_time": "On time",
    "agency.online": "Online",
    "agency.online_target": "Online target 20%",
    "agency.rank": "Scorecard rank by month",
    "agency.rank_axis": "rank (1 is best)",
    "agency.services": "Public services by level",
    "agency.level": "Level {n}",
    "agency.level34": "Share at level 3–4",
    "agency.level34_target": "Level 3–4 target: 30%",
    "agency.ict": "ICT Index 2010–2019: rank against the leaders",
    "agency.ict_rank": "rank of 63",
    "agency.synthetic": "synthetic (dashed)",
    "agency.parent": "Part of",
    "agency.ceased": "Ceased on {date}",
    "agency.merged_into": "— merged into",
    "agency.includes": "Figures include the units merged into it",
    "agency.kind": "Kind",
    "agency.no_services": "This agency runs no public services.",
    "report.title": "Form 06: dossiers handled",
    "report.from": "From",
    "report.to": "To",
    "report.province": "Province",
    "report.show": "Show",
    "report.stt": "Agency",
    "report.received": "Received",
    "report.resolved": "Resolved",
    "report.withdrawn": "Withdrawn",
    "report.open": "Still open",
    "report.carried_over": "Carried over",
    "report.received_online": "Online",
    "report.received_direct_postal": "In person, by post",
    "report.received_total": "Total",
    "report.resolved_early": "Early",
    "report.resolved_on_time": "On time",
    "report.resolved_late": "Late",
    "report.resolved_total": "Total",
    "report.withdrawn_count": "Count",
    "report.open_within_deadline": "Within deadline",
    "report.open_overdue": "Overdue",
    "report.open_total": "Total",
    "report.subtotal": "Subtotal",
    "report.total": "Total",
    "sql.run": "Run (Ctrl+Enter)",
    "sql.tables": "Tables and columns",
    "sql.rows": "{n} rows",
    "sql.capped": "Showing the first {n} rows; the answer has more — download it for all of them.",
    "sql.query_id": "Query id",
    "sql.time": "Time",
    "sql.page": "Page {p} of {n}",
    "sql.prev": "‹ Previous",
    "sql.next": "Next ›",
  },
};

export const LANGUAGES = ["vi", "en"];
let language = LANGUAGES.includes(localStorage.getItem("chiso.lang")) ? localStorage.getItem("chiso.lang") : "vi";

export function lang() {
  return language;
}

export function setLang(next) {
  language = next;
  localStorage.setItem("chiso.lang", next);
  document.documentElement.lang = next;
}

/** The label `key` in the current language, with `{name}` placeholders filled. */
export function t(key, values = {}) {
  const text = LABELS[language][key] ?? LABELS.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? fmtInt(values[name]) : ""));
}

const locale = () => (language === "vi" ? "vi-VN" : "en-GB");
const cache = new Map();
function formatter(kind, options) {
  const key = `${locale()}|${kind}`;
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat(locale(), options));
  return cache.get(key);
}

/** 314984 → "314.984" (vi) or "314,984" (en). */
export function fmtInt(value) {
  return value == null ? "" : typeof value === "number" ? formatter("int", { maximumFractionDigits: 0 }).format(value) : String(value);
}

/** A percentage given as 0–100: 93.8 → "93,8%" (vi). */
export function fmtPercent(value, digits = 1) {
  if (value == null || Number.isNaN(value)) return "";
  return formatter(`pct${digits}`, { style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value / 100);
}

/** A score: 87.25 → "87,25" (vi). */
export function fmtDecimal(value, digits = 2) {
  if (value == null) return "";
  return formatter(`dec${digits}`, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
}

/** "2019-12" → "12/2019" (vi) or "Dec 2019" (en). */
export function fmtMonth(month) {
  const [y, m] = month.split("-").map(Number);
  if (language === "vi") return `${String(m).padStart(2, "0")}/${y}`;
  return new Date(Date.UTC(y, m - 1, 1)).toLocaleDateString("en-GB", { month: "short", year: "numeric", timeZone: "UTC" });
}
